/*
 * test_proxy.c: the PROXY protocol parser (v1 lines, v2 binary headers, each
 * fed whole and byte by byte), the address parser behind X-Forwarded-For and
 * Forwarded, and the CIDR blocks of trusted_proxies.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy.h"
#include "tap.h"

#define V2SIG "\r\n\r\n\0\r\nQUIT\n"

/* The textual form of an address, for messages (static buffer). */
static const char *
ntop(int family, const uint8_t *ip)
{
	static char b[2][INET6_ADDRSTRLEN];
	static int k;

	k ^= 1;
	if (inet_ntop(family, ip, b[k], sizeof(b[k])) == NULL)
		snprintf(b[k], sizeof(b[k]), "(family %d)", family);
	return b[k];
}

/*
 * Parse buf whole; every shorter prefix must ask for more (0), as a reader
 * handed the header one byte at a time would see. Returns the whole's result.
 */
static int
parse_all(const void *buf, size_t len, struct proxy_addr *pa)
{
	uint8_t *copy = tap_dup(buf, len);
	struct proxy_addr scratch;
	int rc, early = 0;

	rc = proxy_parse(copy, len, pa);
	for (size_t k = 0; rc > 0 && k < (size_t)rc; k++)
		if (proxy_parse(copy, k, &scratch) != 0)
			early++;
	free(copy);
	return early == 0 ? rc : -100;
}

static int
parse_str(const char *s, struct proxy_addr *pa)
{
	return parse_all(s, strlen(s), pa);
}

/* Whether pa holds family/text and port. */
static int
addr_is(const struct proxy_addr *pa, int family, const char *text, int port)
{
	uint8_t want[16] = { 0 };

	if (inet_pton(family, text, want) != 1) {
		printf("#   bad test address %s\n", text);
		return 0;
	}
	if (pa->known && pa->family == family && memcmp(pa->ip, want, family == AF_INET ? 4 : 16) == 0 &&
	    pa->port == port)
		return 1;
	printf("#   got known=%d %s port %d, want %s port %d\n", pa->known, ntop(pa->family, pa->ip),
	    pa->port, text, port);
	return 0;
}

static void
test_v1(void)
{
	static const char *const bad[] = {
		"PROXY TCP4 1.2.3.4 127.0.0.1 1\r\n",		/* a field short */
		"PROXY TCP4 1.2.3.4 127.0.0.1 1 2 3\r\n",	/* a field over */
		"PROXY TCP4  1.2.3.4 127.0.0.1 1 2\r\n",	/* two spaces */
		"PROXY TCP4 1.2.3.4 127.0.0.1 1 2 \r\n",	/* trailing space */
		"PROXY TCP5 1.2.3.4 127.0.0.1 1 2\r\n",
		"PROXY tcp4 1.2.3.4 127.0.0.1 1 2\r\n",
		"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n",
		"PROXY TCP4 1.2.3 127.0.0.1 1 2\r\n",
		"PROXY TCP4 1.2.3.4 127.0.0.1 65536 2\r\n",
		"PROXY TCP4 1.2.3.4 127.0.0.1 01 2\r\n",	/* leading zero */
		"PROXY TCP4 1.2.3.4 127.0.0.1 -1 2\r\n",
		"PROXY TCP4 1.2.3.4 127.0.0.1 1 x\r\n",
		"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n",	/* v6 under TCP4 */
		"PROXY TCP4 ::ffff:1.2.3.4 127.0.0.1 1 2\r\n",	/* v4-mapped is v6 text */
		"PROXY TCP4 1.2.3.4:5 127.0.0.1 1 2\r\n",	/* no ports in address fields */
		"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",		/* v4 under TCP6 */
		"PROXY TCP6 1.2.3.4:5 ::1 1 2\r\n",
		"PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
		"PROXY TCP6 [2001:db8::1] ::1 1 2\r\n",		/* v1 has no brackets */
		"PROXY TCP6 [2001:db8::1]:80 ::1 1 2\r\n",
		"PROXY TCP6 ::ffff:1.2.3.4:80 ::1 1 2\r\n",
		"PROXY TCP6 ::ffff:1.2.3 ::1 1 2\r\n",
		"PROXY TCP6 2001:db8:::1 ::1 1 2\r\n",
		"PROXY TCP4 1.2.3.4 127.0.0.1 1 2\n\r\n",	/* a bare LF inside */
		"PROXY\r\n",
		"PROXY \r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"proxy TCP4 1.2.3.4 127.0.0.1 1 2\r\n",
	};
	struct proxy_addr pa;
	char line[256];

	is_int(parse_str("PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n", &pa), 45, "TCP4 line: its length");
	ok(addr_is(&pa, AF_INET, "192.0.2.1", 40000), "TCP4: source address and port");
	is_int(parse_str("PROXY TCP4 192.0.2.1 198.51.100.2 0 65535\r\nGET / HTTP/1.1\r\n", &pa), 43,
	    "what follows the line is not taken");
	ok(addr_is(&pa, AF_INET, "192.0.2.1", 0), "port 0 is a port");
	is_int(parse_str("PROXY TCP6 2001:db8::7 ::1 40002 8080\r\n", &pa), 39, "TCP6 line");
	ok(addr_is(&pa, AF_INET6, "2001:db8::7", 40002), "TCP6: source address and port");
	is_int(parse_str("PROXY TCP6 2001:DB8:0:0:0:0:0:7 ::1 1 2\r\n", &pa), 41, "TCP6 long form, upper case");
	ok(addr_is(&pa, AF_INET6, "2001:db8::7", 1), "TCP6 long form: same address");

	/* What HAProxy sends from a dual-stack listener (issue 16). */
	is_int(parse_str("PROXY TCP6 ::ffff:203.0.113.11 ::ffff:127.0.0.1 40000 8080\r\n", &pa), 60,
	    "TCP6 with v4-mapped addresses parses");
	ok(addr_is(&pa, AF_INET, "203.0.113.11", 40000), "a v4-mapped source is its IPv4 address");
	ok(parse_str("PROXY TCP6 ::FFFF:203.0.113.12 ::1 1 2\r\n", &pa) > 0 &&
	    addr_is(&pa, AF_INET, "203.0.113.12", 1), "v4-mapped in upper case");
	ok(parse_str("PROXY TCP6 0:0:0:0:0:ffff:cb00:710d ::1 1 2\r\n", &pa) > 0 &&
	    addr_is(&pa, AF_INET, "203.0.113.13", 1), "v4-mapped in hex groups");
	ok(parse_str("PROXY TCP6 ::ffff:0:cb00:710e ::1 1 2\r\n", &pa) > 0 &&
	    addr_is(&pa, AF_INET6, "::ffff:0:cb00:710e", 1), "v4-translated (::ffff:0:0:0/96) stays IPv6");

	/* The proxy does not know: keep the socket's address. */
	is_int(parse_str("PROXY UNKNOWN\r\n", &pa), 15, "UNKNOWN");
	is_int(pa.known, 0, "UNKNOWN: not known");
	is_int(parse_str("PROXY UNKNOWN ffff:f...:ffff ffff:f...:ffff 65535 65535\r\n", &pa), 57,
	    "UNKNOWN: the rest of the line is ignored");
	is_int(pa.known, 0, "UNKNOWN with fields: not known");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		is_int(parse_str(bad[i], &pa), -1, "refused: %.*s", (int)strcspn(bad[i], "\r\n"), bad[i]);
	}

	/* Needs more: a prefix of a line, and a line without its CRLF yet. */
	is_int(proxy_parse((const uint8_t *)"", 0, &pa), 0, "empty: more");
	is_int(proxy_parse((const uint8_t *)"PROX", 4, &pa), 0, "\"PROX\": more");
	is_int(proxy_parse((const uint8_t *)"PROXY TCP4 1.2.3.4", 18, &pa), 0, "no CRLF yet: more");
	is_int(proxy_parse((const uint8_t *)"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", 32, &pa), 0,
	    "a bare LF is not an end: more");
	is_int(proxy_parse((const uint8_t *)"PROXX", 5, &pa), -1, "a wrong prefix is refused at once");
	is_int(proxy_parse((const uint8_t *)"G", 1, &pa), -1, "one wrong byte is refused at once");

	/* The spec's bound: 107 bytes with the CRLF. */
	snprintf(line, sizeof(line), "PROXY TCP6 %s %s 65535 65535\r\n",
	    "0000:0000:0000:0000:0000:ffff:255.255.255.255", "0000:0000:0000:0000:0000:0000:000:1");
	is_int((int)strlen(line), 106, "(a 106-byte line)");
	is_int(parse_str(line, &pa), 106, "a 106-byte line parses");
	ok(addr_is(&pa, AF_INET, "255.255.255.255", 65535), "its v4-mapped long form is IPv4");
	snprintf(line, sizeof(line), "PROXY TCP6 %s %s 65535 65535\r\n",
	    "0000:0000:0000:0000:0000:ffff:255.255.255.255", "0000:0000:0000:0000:0000:0000:0000:1");
	is_int(parse_str(line, &pa), 107, "a 107-byte line parses");
	snprintf(line, sizeof(line), "PROXY TCP6 %s %s 65535 65535\r\n",
	    "0000:0000:0000:0000:0000:ffff:255.255.255.255", "0000:0000:0000:0000:0000:0000:0000:01");
	is_int(proxy_parse((const uint8_t *)line, strlen(line), &pa), -1, "a 108-byte line is refused");
	memset(line, '1', sizeof(line));
	memcpy(line, "PROXY TCP4 ", 11);
	is_int(proxy_parse((const uint8_t *)line, 106, &pa), 0, "106 bytes without CRLF: more");
	is_int(proxy_parse((const uint8_t *)line, 107, &pa), -1, "107 bytes without CRLF: refused");
	is_int(proxy_parse((const uint8_t *)line, sizeof(line), &pa), -1, "256 bytes without CRLF: refused");

	/* A NUL byte is not the end of an address. */
	is_int(parse_all("PROXY TCP4 1.2.3.4\0 127.0.0.1 1 2\r\n", 35, &pa), -1, "a NUL in an address");
}

/* A v2 header: version 2, cmd, family byte, then body. */
static size_t
v2(uint8_t *out, int cmd, int fam, const void *body, size_t blen)
{
	memcpy(out, V2SIG, 12);
	out[12] = (uint8_t)(0x20 | cmd);
	out[13] = (uint8_t)fam;
	out[14] = (uint8_t)(blen >> 8);
	out[15] = (uint8_t)blen;
	memcpy(out + 16, body, blen);
	return 16 + blen;
}

static void
test_v2(void)
{
	static const uint8_t in4[12] = { 198, 51, 100, 9, 127, 0, 0, 1, 0x9c, 0x43, 0x1f, 0x90 };
	uint8_t in6[36] = { 0x20, 0x01, 0x0d, 0xb8 }, mapped[36] = { 0 }, body[1100], h[1200];
	struct proxy_addr pa;
	size_t n;

	in6[15] = 9;
	in6[31] = 1;
	in6[32] = 0x9c;
	in6[33] = 0x44;
	n = v2(h, 1, 0x11, in4, sizeof(in4));
	is_int(parse_all(h, n, &pa), 28, "v2 TCP over IPv4");
	ok(addr_is(&pa, AF_INET, "198.51.100.9", 40003), "v2 IPv4: address and port");
	/* TLVs after the addresses (authority, then a NOOP) belong to the header. */
	memcpy(body, in4, 12);
	memcpy(body + 12, "\x02\x00\x0c" "chat.example" "\x04\x00\x05" "\0\0\0\0\0", 23);
	n = v2(h, 1, 0x11, body, 35);
	memcpy(h + n, "GET", 3);
	is_int(parse_all(h, n + 3, &pa), 51, "v2 with TLVs: the TLVs are skipped, the request is not");
	ok(addr_is(&pa, AF_INET, "198.51.100.9", 40003), "v2 with TLVs: address");
	n = v2(h, 1, 0x12, in4, sizeof(in4));
	ok(parse_all(h, n, &pa) == 28 && addr_is(&pa, AF_INET, "198.51.100.9", 40003), "v2 UDP over IPv4: address");
	n = v2(h, 1, 0x21, in6, sizeof(in6));
	is_int(parse_all(h, n, &pa), 52, "v2 TCP over IPv6");
	ok(addr_is(&pa, AF_INET6, "2001:db8::9", 40004), "v2 IPv6: address and port");
	mapped[10] = mapped[11] = 0xff;
	mapped[12] = 203;
	mapped[13] = 0;
	mapped[14] = 113;
	mapped[15] = 21;
	mapped[32] = 0x00;
	mapped[33] = 0x50;
	n = v2(h, 1, 0x21, mapped, sizeof(mapped));
	ok(parse_all(h, n, &pa) == 52 && addr_is(&pa, AF_INET, "203.0.113.21", 80), "v2 v4-mapped IPv6 is IPv4");

	/* LOCAL (the proxy's own health checks) and UNSPEC: keep the socket's address. */
	n = v2(h, 0, 0x00, "", 0);
	ok(parse_all(h, n, &pa) == 16 && !pa.known, "v2 LOCAL: 16 bytes, not known");
	n = v2(h, 0, 0x11, in4, sizeof(in4));
	ok(parse_all(h, n, &pa) == 28 && !pa.known, "v2 LOCAL with addresses: not known");
	n = v2(h, 1, 0x00, "\0\0\0", 3);
	ok(parse_all(h, n, &pa) == 19 && !pa.known, "v2 PROXY UNSPEC: not known");

	/* Refused. */
	n = v2(h, 1, 0x11, in4, sizeof(in4));
	h[12] = 0x11;
	is_int(parse_all(h, n, &pa), -1, "version 1 in a v2 header");
	h[12] = 0x31;
	is_int(parse_all(h, n, &pa), -1, "version 3");
	h[12] = 0x22;
	is_int(parse_all(h, n, &pa), -1, "command 2");
	n = v2(h, 1, 0x31, body, 216);
	is_int(parse_all(h, n, &pa), -1, "a unix address is not a client address");
	n = v2(h, 1, 0x41, in4, sizeof(in4));
	is_int(parse_all(h, n, &pa), -1, "family 4 does not exist");
	n = v2(h, 1, 0x11, in4, 11);
	is_int(parse_all(h, n, &pa), -1, "IPv4 body shorter than 12 bytes");
	n = v2(h, 1, 0x21, in6, 35);
	is_int(parse_all(h, n, &pa), -1, "IPv6 body shorter than 36 bytes");
	memset(body, 0, sizeof(body));
	n = v2(h, 1, 0x11, body, 1024);
	is_int(parse_all(h, n, &pa), 1040, "a 1024-byte body is within the bound");
	n = v2(h, 1, 0x11, body, 1025);
	is_int(proxy_parse(h, 16, &pa), -1, "a 1025-byte body is refused from its length alone");
	h[14] = 0xff;
	h[15] = 0xff;
	is_int(proxy_parse(h, 16, &pa), -1, "a 65535-byte body is refused");

	/* Incomplete. */
	n = v2(h, 1, 0x11, in4, sizeof(in4));
	is_int(proxy_parse(h, 5, &pa), 0, "five bytes of signature: more");
	is_int(proxy_parse(h, 15, &pa), 0, "fifteen bytes: more");
	is_int(proxy_parse(h, 27, &pa), 0, "a byte short: more");
	memcpy(h, "\r\n\r\n\0\r\nQUIX", 12);
	is_int(proxy_parse(h, n, &pa), -1, "a wrong signature byte is refused");
	is_int(proxy_parse(h, 11, &pa), -1, "refused as soon as the signature differs");
}

/* proxy_ip_parse on a string: the family, or -1; ip filled. */
static int
ip(const char *s, uint8_t out[16])
{
	/* Exactly strlen(s) bytes, and no NUL after them. */
	char *copy = tap_dup(s, strlen(s));
	int family = 0, rc;

	rc = proxy_ip_parse(copy, strlen(s), &family, out);
	free(copy);
	return rc == -1 ? -1 : family;
}

static void
test_ip_parse(void)
{
	static const struct { const char *in; int family; const char *want; } cases[] = {
		{ "203.0.113.5", AF_INET, "203.0.113.5" },
		{ " 203.0.113.5\t", AF_INET, "203.0.113.5" },
		{ "203.0.113.5:8080", AF_INET, "203.0.113.5" },
		{ "\"203.0.113.5:8080\"", AF_INET, "203.0.113.5" },
		{ "2001:db8::52", AF_INET6, "2001:db8::52" },
		{ "[2001:db8::52]", AF_INET6, "2001:db8::52" },
		{ "[2001:db8::52]:4711", AF_INET6, "2001:db8::52" },
		{ "\"[2001:db8::52]:4711\"", AF_INET6, "2001:db8::52" },
		{ "::1", AF_INET6, "::1" },
		{ "::", AF_INET6, "::" },
		/* v4-mapped: the IPv4 client it stands for (issue 16). */
		{ "::ffff:198.51.100.9", AF_INET, "198.51.100.9" },
		{ "::FFFF:198.51.100.9", AF_INET, "198.51.100.9" },
		{ "[::ffff:198.51.100.9]", AF_INET, "198.51.100.9" },
		{ "[::ffff:198.51.100.9]:443", AF_INET, "198.51.100.9" },
		{ "::ffff:c633:6409", AF_INET, "198.51.100.9" },
		{ "0:0:0:0:0:ffff:198.51.100.9", AF_INET, "198.51.100.9" },
		{ "64:ff9b::198.51.100.9", AF_INET6, "64:ff9b::c633:6409" },	/* NAT64: an IPv6 client */
	};
	static const char *const bad[] = {
		"", " ", "\"\"", "unknown", "_hidden", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4",
		"1.2.3.4:", "1.2.3.4:x", "1.2.3.4:123456", "1.2.3.4:80:80", "1.2.3.4 5",
		"::ffff:198.51.100.9:80",	/* v6 with a port needs brackets */
		"2001:db8:::1", "[2001:db8::1", "2001:db8::1]", "[2001:db8::1]x", "[2001:db8::1]:",
		"[2001:db8::1]:x", "[]", "[1.2.3.4]", "[[::1]]", "[::1]:80:80",
		"0000:0000:0000:0000:0000:ffff:255.255.255.255:1",
	};
	uint8_t got[16], want[16];
	char raw[] = "10.1.2.3garbage";
	int family;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(want, 0, sizeof(want));
		(void)inet_pton(cases[i].family, cases[i].want, want);
		family = ip(cases[i].in, got);
		ok(family == cases[i].family && memcmp(got, want, family == AF_INET ? 4 : 16) == 0,
		    "'%s' is %s", cases[i].in, cases[i].want);
		if (family != cases[i].family)
			printf("#   got family %d\n", family);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(ip(bad[i], got), -1, "'%s' is refused", bad[i]);
	ok(proxy_ip_parse(raw, 8, &family, got) == 0 && family == AF_INET && memcmp(got, "\x0a\x01\x02\x03", 4) == 0,
	    "only n bytes are read");
	ok(proxy_ip_parse("1.2.3.4\0", 8, &family, got) == -1, "a NUL inside n is refused");
	ok(proxy_ip_parse("1111111111111111111111111111111111111111111111111111111111111111111", 67,
	    &family, got) == -1, "a long digit string is refused");
}

/* cidr_parse then cidr_match of one address. */
static int
in_block(const char *block, const char *addr)
{
	struct cidr c;
	uint8_t a[16] = { 0 };
	int family = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;

	if (cidr_parse(block, &c) == -1 || inet_pton(family, addr, a) != 1) {
		printf("#   cannot parse %s or %s\n", block, addr);
		return -1;
	}
	return cidr_match(&c, family, a);
}

static void
test_cidr(void)
{
	static const char *const bad[] = {
		"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/ 8",
		"10.0.0.0/8x", "10.0.0.0/08", "10.0.0.0/8/8", "::/129", "10.0.0.0:80", "10.0.0", "[::1]",
		"[::1]/128", "host.example/32", "10.0.0.0/0008",
	};
	struct cidr c;

	is_int(cidr_parse("10.0.0.0/8", &c), 0, "10.0.0.0/8 parses");
	ok(c.family == AF_INET && c.bits == 8, "an IPv4 block of 8 bits");
	is_int(in_block("10.0.0.0/8", "10.255.1.2"), 1, "10.255.1.2 is in 10.0.0.0/8");
	is_int(in_block("10.0.0.0/8", "11.0.0.0"), 0, "11.0.0.0 is not");
	is_int(in_block("10.0.0.0/8", "9.255.255.255"), 0, "9.255.255.255 is not");
	is_int(in_block("10.0.0.0/8", "::ffff:10.0.0.1"), 0, "an IPv6 address never matches an IPv4 block");
	is_int(in_block("192.168.4.0/22", "192.168.7.255"), 1, "a block not on a byte: its last address");
	is_int(in_block("192.168.4.0/22", "192.168.8.0"), 0, "a block not on a byte: the next one");
	is_int(in_block("192.168.4.0/22", "192.168.3.255"), 0, "a block not on a byte: the one before");
	is_int(in_block("127.0.0.1", "127.0.0.1"), 1, "a bare address is a /32");
	is_int(in_block("127.0.0.1", "127.0.0.2"), 0, "a bare address is only itself");
	is_int(in_block("0.0.0.0/0", "203.0.113.9"), 1, "/0 takes every IPv4 address");
	is_int(in_block("0.0.0.0/0", "::1"), 0, "/0 of IPv4 takes no IPv6 one");
	is_int(in_block("10.1.2.3/8", "10.9.9.9"), 1, "host bits in the block are ignored");
	is_int(in_block("::1", "::1"), 1, "::1 is a /128");
	is_int(in_block("::1", "::2"), 0, "::1 is only itself");
	is_int(in_block("2001:db8::/32", "2001:db8:ffff::1"), 1, "2001:db8::/32 takes 2001:db8:ffff::1");
	is_int(in_block("2001:db8::/32", "2001:db9::1"), 0, "not 2001:db9::1");
	is_int(in_block("2001:db8::/33", "2001:db8:8000::"), 0, "a v6 block not on a byte");
	is_int(in_block("::/0", "2001:db8::1"), 1, "::/0 takes every IPv6 address");
	is_int(in_block("::/0", "10.0.0.1"), 0, "::/0 takes no IPv4 one");
	/* Peers' v4-mapped addresses are compared as IPv4: so are blocks written that way. */
	is_int(cidr_parse("::ffff:10.0.0.0/104", &c), 0, "a v4-mapped block parses");
	ok(c.family == AF_INET && c.bits == 8, "::ffff:10.0.0.0/104 is 10.0.0.0/8");
	is_int(in_block("::ffff:10.0.0.0/104", "10.2.3.4"), 1, "and takes 10.2.3.4");
	is_int(in_block("::ffff:203.0.113.1", "203.0.113.1"), 1, "a bare v4-mapped address is a /32");
	is_int(cidr_parse("::ffff:0:0/95", &c), 0, "a block wider than the v4-mapped range parses");
	ok(c.family == AF_INET6 && c.bits == 95, "and stays IPv6");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(cidr_parse(bad[i], &c), -1, "'%s' is refused", bad[i]);
}

int
main(void)
{
	test_v1();
	test_v2();
	test_ip_parse();
	test_cidr();
	return tap_done();
}
