/*
 * proxy.h: the PROXY protocol (HAProxy, versions 1 and 2) that load
 * balancers put in front of a connection to say who the client really is.
 * A parser on buffers only, plus CIDR matching for trusted_proxies.
 */
#ifndef ROOMD_PROXY_H
#define ROOMD_PROXY_H

#include <stddef.h>
#include <stdint.h>

#define PROXY_V1_MAX	107	/* the spec's bound on a v1 line */
#define PROXY_V2_MAX	(16 + 1024)	/* header plus what we accept of TLVs */

struct proxy_addr {
	int	 known;		/* 0: LOCAL or UNKNOWN, keep the socket's address */
	int	 family;	/* AF_INET or AF_INET6 */
	uint8_t	 ip[16];
	uint16_t port;
};

/*
 * Parse a PROXY header at the start of buf. Returns its length (> 0) and
 * fills out, 0 if more bytes are needed, or -1 if it is not a valid header.
 */
int proxy_parse(const uint8_t *buf, size_t len, struct proxy_addr *out);

struct cidr {
	int	 family;
	uint8_t	 addr[16];
	int	 bits;
};

/*
 * Parse "10.0.0.0/8", "::1/128" or a bare address. -1 if invalid. A block
 * of v4-mapped addresses (::ffff:10.0.0.0/104) becomes the IPv4 block.
 */
int cidr_parse(const char *, struct cidr *);
/* Whether ip (of family) is inside the block. */
int cidr_match(const struct cidr *, int family, const uint8_t *ip);
/*
 * Parse n bytes of a textual IPv4/IPv6 address, as X-Forwarded-For and
 * Forwarded write them: v4:port, [v6] and [v6]:port allowed, quotes and
 * blanks around it ignored. A v4-mapped IPv6 address comes back as IPv4.
 * -1 if it is none of these.
 */
int proxy_ip_parse(const char *s, size_t n, int *family, uint8_t ip[16]);

#endif
