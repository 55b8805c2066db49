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

int
proxy_ip_parse(const char *s, size_t n, int *family, uint8_t ip[16])
{
	char buf[64];
	const char *e;

	while (n > 0 && (*s == ' ' || *s == '\t' || *s == '"')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '"'))
		n--;
	if (n > 0 && *s == '[') {
		/* [v6] or [v6]:port */
		if ((e = memchr(s, ']', n)) == NULL)
			return -1;
		n = (size_t)(e - s - 1);
		s++;
	} else if (n > 0 && memchr(s, '.', n) != NULL && (e = memchr(s, ':', n)) != NULL)
		n = (size_t)(e - s);	/* v4:port */
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, ip) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, ip) == 1) {
		*family = AF_INET6;
		if (memcmp(ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
			memmove(ip, ip + 12, 4);	/* v4-mapped: the v4 address */
			*family = AF_INET;
		}
		return 0;
	}
	return -1;
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
	int n = 0, dfam;

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
	if (proxy_ip_parse(f[2], fl[2], &out->family, out->ip) == -1 ||
	    proxy_ip_parse(f[3], fl[3], &dfam, dst) == -1 ||
	    parse_port(f[4], fl[4], &out->port) == -1 || parse_port(f[5], fl[5], &dport) == -1)
		return -1;
	if ((f[1][3] == '4') != (out->family == AF_INET && memchr(f[2], ':', fl[2]) == NULL))
		return -1;
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
		if (memcmp(out->ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
			memmove(out->ip, out->ip + 12, 4);
			out->family = AF_INET;
		}
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
	char *end;
	long bits;

	memset(c, 0, sizeof(*c));
	if (proxy_ip_parse(s, n, &c->family, c->addr) == -1 || memchr(s, ':', n) != NULL) {
		/* proxy_ip_parse strips :port; a CIDR never has one, so parse strictly. */
		char buf[64];

		if (n == 0 || n >= sizeof(buf))
			return -1;
		memcpy(buf, s, n);
		buf[n] = '\0';
		if (inet_pton(AF_INET, buf, c->addr) == 1)
			c->family = AF_INET;
		else if (inet_pton(AF_INET6, buf, c->addr) == 1)
			c->family = AF_INET6;
		else
			return -1;
	}
	c->bits = c->family == AF_INET ? 32 : 128;
	if (slash != NULL) {
		bits = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || bits < 0 || bits > c->bits)
			return -1;
		c->bits = (int)bits;
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
