/*
 * fuzz_proxy.c: libFuzzer target for the PROXY header parser, the address
 * parser behind X-Forwarded-For and the trusted_proxies CIDR parser. A
 * header's result must not change as bytes arrive; parsed addresses must
 * round-trip through their text; a block must hold its own address.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, \
	__FILE__, __LINE__); abort(); } } while (0)

static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* An address is IPv4 or IPv6, and never a v4-mapped IPv6 one (those become IPv4). */
static void
check_addr(int family, const uint8_t *ip)
{
	CHECK(family == AF_INET || family == AF_INET6);
	if (family == AF_INET6)
		CHECK(memcmp(ip, v4mapped, sizeof(v4mapped)) != 0);
}

static void
check_header(const uint8_t *buf, size_t n)
{
	struct proxy_addr pa, again;
	int rc = proxy_parse(buf, n, &pa);

	CHECK(rc >= -1 && (size_t)(rc > 0 ? rc : 0) <= n && rc <= PROXY_V2_MAX);
	if (rc <= 0)
		return;
	if (buf[0] == 'P')
		CHECK(rc <= PROXY_V1_MAX && buf[rc - 2] == '\r' && buf[rc - 1] == '\n');
	if (pa.known)
		check_addr(pa.family, pa.ip);
	/* Every shorter prefix asks for more; the header alone gives the same answer. */
	for (size_t k = 0; k < (size_t)rc; k++)
		CHECK(proxy_parse(buf, k, &again) == 0);
	CHECK(proxy_parse(buf, (size_t)rc, &again) == rc);
	CHECK(again.known == pa.known);
	if (pa.known)
		CHECK(again.family == pa.family && again.port == pa.port && memcmp(again.ip, pa.ip, 16) == 0);
}

static void
check_ip(const char *s, size_t n)
{
	char text[INET6_ADDRSTRLEN + 8], with_port[INET6_ADDRSTRLEN + 16];
	uint8_t ip[16], ip2[16];
	int family, family2;

	if (proxy_ip_parse(s, n, &family, ip) == -1)
		return;
	check_addr(family, ip);
	/* Its text, bare and in the forms with a port, parses to the same address. */
	CHECK(inet_ntop(family, ip, text, sizeof(text)) != NULL);
	CHECK(proxy_ip_parse(text, strlen(text), &family2, ip2) == 0);
	CHECK(family2 == family && memcmp(ip, ip2, family == AF_INET ? 4 : 16) == 0);
	snprintf(with_port, sizeof(with_port), family == AF_INET ? "%s:443" : "[%s]:443", text);
	CHECK(proxy_ip_parse(with_port, strlen(with_port), &family2, ip2) == 0);
	CHECK(family2 == family && memcmp(ip, ip2, family == AF_INET ? 4 : 16) == 0);
}

static void
check_cidr(const char *s, uint8_t flip)
{
	struct cidr c;
	uint8_t ip[16];
	int bytes, bit;

	if (cidr_parse(s, &c) == -1)
		return;
	CHECK(c.family == AF_INET || c.family == AF_INET6);
	/* A block inside ::ffff:0:0/96 is an IPv4 block (a wider one cannot be). */
	if (c.family == AF_INET6 && c.bits >= 96)
		CHECK(memcmp(c.addr, v4mapped, sizeof(v4mapped)) != 0);
	bytes = c.family == AF_INET ? 4 : 16;
	CHECK(c.bits >= 0 && c.bits <= bytes * 8);
	/* A block holds its own address, and no address of the other family. */
	CHECK(cidr_match(&c, c.family, c.addr) == 1);
	CHECK(cidr_match(&c, c.family == AF_INET ? AF_INET6 : AF_INET, c.addr) == 0);
	/* Flipping one bit: inside the prefix leaves the block, after it stays in. */
	bit = flip % (bytes * 8);
	memcpy(ip, c.addr, sizeof(ip));
	ip[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
	CHECK(cidr_match(&c, c.family, ip) == (bit >= c.bits));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so that any over-read trips ASan; a NUL-terminated one for cidr_parse. */
	uint8_t *buf = malloc(size > 0 ? size : 1);
	char *str = malloc(size + 1);

	if (buf == NULL || str == NULL) {
		free(buf);
		free(str);
		return 0;
	}
	memcpy(buf, data, size);
	memcpy(str, data, size);
	str[size] = '\0';
	check_header(buf, size);
	check_ip((const char *)buf, size);
	check_cidr(str, size > 0 ? data[size - 1] : 0);
	free(buf);
	free(str);
	return 0;
}
