/*
 * proxy.c: PROXY protocol v1 ("PROXY TCP4 src dst sport dport\r\n") and v2
 * (a 12-byte signature and a binary header), as HAProxy's proxy-protocol.txt
 * describes them. Every length is checked before use.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy.h"

static const uint8_t v2sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* The first 12 bytes of a v4-mapped IPv6 address (::ffff:a.b.c.d, RFC 4291 2.5.5.2). */
static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* A v4-mapped IPv6 address is the IPv4 client it stands for: make it that. */
static void
unmap_v4(int *family, uint8_t ip[16])
{
	if (*family == AF_INET6 && memcmp(ip, v4mapped, sizeof(v4mapped)) == 0) {
		memmove(ip, ip + 12, 4);
		memset(ip + 4, 0, 12);
		*family = AF_INET;
	}
}

/* inet_pton on exactly n bytes of s (no NUL needed, none allowed); 0 or -1. */
static int
pton(int family, const char *s, size_t n, uint8_t ip[16])
{
	char buf[INET6_ADDRSTRLEN];

	memset(ip, 0, 16);
	if (n == 0 || n >= sizeof(buf) || memchr(s, '\0', n) != NULL)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(family, buf, ip) == 1 ? 0 : -1;
}

/* Whether s[0..n) is empty or ":port" with 1 to 5 digits. */
static int
port_suffix_ok(const char *s, size_t n)
{
	if (n == 0)
		return 1;
	if (n < 2 || n > 6 || s[0] != ':')
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

/*
 * The forms X-Forwarded-For and Forwarded carry: IPv4, IPv6, IPv4:port,
 * [IPv6] and [IPv6]:port, maybe quoted. Which one it is, inet_pton decides:
 * v4-mapped IPv6 has both dots and colons and is still one address.
 */
int
proxy_ip_parse(const char *s, size_t n, int *family, uint8_t ip[16])
{
	const char *e;

	while (n > 0 && (*s == ' ' || *s == '\t' || *s == '"')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '"'))
		n--;
	if (n > 0 && *s == '[') {
		if ((e = memchr(s, ']', n)) == NULL || !port_suffix_ok(e + 1, n - (size_t)(e + 1 - s)) ||
		    pton(AF_INET6, s + 1, (size_t)(e - s - 1), ip) == -1)
			return -1;
		*family = AF_INET6;
	} else if (pton(AF_INET6, s, n, ip) == 0)
		*family = AF_INET6;
	else if (pton(AF_INET, s, n, ip) == 0)
		*family = AF_INET;
	else if ((e = memchr(s, ':', n)) != NULL && port_suffix_ok(e, n - (size_t)(e - s)) &&
	    pton(AF_INET, s, (size_t)(e - s), ip) == 0)
		*family = AF_INET;
	else
		return -1;
	unmap_v4(family, ip);
	return 0;
}

static int
parse_port(const char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

static int
parse_v1(const uint8_t *buf, size_t len, struct proxy_addr *out)
{
	const char *p = (const char *)buf, *s, *e = NULL, *crlf = NULL, *f[6];
	size_t fl[6], lim = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
	uint16_t dport;
	uint8_t dst[16];
	int n = 0;

	for (size_t i = 0; i + 1 < lim; i++)
		if (p[i] == '\r' && p[i + 1] == '\n') {
			crlf = p + i;
			break;
		}
	if (crlf == NULL)
		return len >= PROXY_V1_MAX ? -1 : 0;
	/* Fields between single spaces: PROXY PROTO SRC DST SPORT DPORT. */
	for (s = p; n < 6; s = e + 1) {
		if ((e = memchr(s, ' ', (size_t)(crlf - s))) == NULL)
			e = crlf;
		f[n] = s;
		fl[n] = (size_t)(e - s);
		n++;
		if (e == crlf)
			break;
	}
	memset(out, 0, sizeof(*out));
	if (n < 2 || fl[0] != 5 || memcmp(f[0], "PROXY", 5) != 0)
		return -1;
	if (fl[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0)
		return (int)(crlf - p) + 2;	/* the proxy does not know: keep ours */
	if (n != 6 || e != crlf || fl[1] != 4 ||
	    (memcmp(f[1], "TCP4", 4) != 0 && memcmp(f[1], "TCP6", 4) != 0))
		return -1;
	/* Bare addresses of the family the line names: no brackets, no ports. */
	out->family = f[1][3] == '4' ? AF_INET : AF_INET6;
	if (pton(out->family, f[2], fl[2], out->ip) == -1 || pton(out->family, f[3], fl[3], dst) == -1 ||
	    parse_port(f[4], fl[4], &out->port) == -1 || parse_port(f[5], fl[5], &dport) == -1)
		return -1;
	unmap_v4(&out->family, out->ip);
	out->known = 1;
	return (int)(crlf - p) + 2;
}

static int
parse_v2(const uint8_t *buf, size_t len, struct proxy_addr *out)
{
	size_t hlen;
	uint8_t cmd, fam;

	if (len < 16)
		return 0;
	cmd = buf[12];
	fam = buf[13];
	hlen = (size_t)buf[14] << 8 | buf[15];
	if ((cmd >> 4) != 2 || 16 + hlen > PROXY_V2_MAX)
		return -1;
	if (len < 16 + hlen)
		return 0;
	memset(out, 0, sizeof(*out));
	if ((cmd & 0x0f) == 0)
		return (int)(16 + hlen);	/* LOCAL: a health check from the proxy itself */
	if ((cmd & 0x0f) != 1)
		return -1;
	switch (fam >> 4) {
	case 1:		/* AF_INET */
		if (hlen < 12)
			return -1;
		out->family = AF_INET;
		memcpy(out->ip, buf + 16, 4);
		out->port = (uint16_t)(buf[24] << 8 | buf[25]);
		break;
	case 2:		/* AF_INET6 */
		if (hlen < 36)
			return -1;
		out->family = AF_INET6;
		memcpy(out->ip, buf + 16, 16);
		out->port = (uint16_t)(buf[48] << 8 | buf[49]);
		unmap_v4(&out->family, out->ip);
		break;
	case 0:		/* UNSPEC */
		return (int)(16 + hlen);
	default:
		return -1;	/* unix sockets: not a client address we can use */
	}
	out->known = 1;
	return (int)(16 + hlen);
}

int
proxy_parse(const uint8_t *buf, size_t len, struct proxy_addr *out)
{
	size_t n = len < sizeof(v2sig) ? len : sizeof(v2sig);

	if (len == 0)
		return 0;
	if (memcmp(buf, v2sig, n) == 0)
		return n < sizeof(v2sig) ? 0 : parse_v2(buf, len, out);
	n = len < 6 ? len : 6;
	if (memcmp(buf, "PROXY ", n) == 0)
		return n < 6 ? 0 : parse_v1(buf, len, out);
	return -1;
}

int
cidr_parse(const char *s, struct cidr *c)
{
	const char *slash = strchr(s, '/');
	size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);

	memset(c, 0, sizeof(*c));
	if (pton(AF_INET, s, n, c->addr) == 0)
		c->family = AF_INET;
	else if (pton(AF_INET6, s, n, c->addr) == 0)
		c->family = AF_INET6;
	else
		return -1;
	c->bits = c->family == AF_INET ? 32 : 128;
	if (slash != NULL) {
		const char *b = slash + 1;
		size_t bl = strlen(b);
		int bits = 0;

		/* 1 to 3 digits, no sign, no leading zero, no more than the address has. */
		if (bl == 0 || bl > 3 || (bl > 1 && b[0] == '0'))
			return -1;
		for (size_t i = 0; i < bl; i++) {
			if (!isdigit((unsigned char)b[i]))
				return -1;
			bits = bits * 10 + (b[i] - '0');
		}
		if (bits > c->bits)
			return -1;
		c->bits = bits;
	}
	/* Peers' v4-mapped addresses are compared as IPv4 (unmap_v4): so are blocks of them. */
	if (c->family == AF_INET6 && c->bits >= 96 && memcmp(c->addr, v4mapped, sizeof(v4mapped)) == 0) {
		unmap_v4(&c->family, c->addr);
		c->bits -= 96;
	}
	return 0;
}

int
cidr_match(const struct cidr *c, int family, const uint8_t *ip)
{
	int full = c->bits / 8, rest = c->bits % 8;

	if (family != c->family)
		return 0;
	if (memcmp(ip, c->addr, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((ip[full] ^ c->addr[full]) & (0xff << (8 - rest))) == 0;
}
