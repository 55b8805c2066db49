/*
 * fuzz_auth.c: libFuzzer target for JWT checking. The first byte picks the
 * mode: the input as a token as a client sends it, or as "header\nclaims"
 * JSON that the target signs itself, so the claim checks behind the
 * signature are reached too. base64url decoding must be canonical (it
 * round-trips); a verified identity must say what its claims say.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, \
	__FILE__, __LINE__); abort(); } } while (0)

#define SECRET	"fuzz-secret-0123456789abcdef"
#define NOW	1700000000LL

static const char *const reasons[] = {
	"token missing or too long", "not a JWT", "bad token header", "token algorithm is not HS256",
	"bad token signature", "bad token claims", "bad exp claim", "token expired", "bad nbf claim",
	"token not valid yet", "token has no sub", "bad rooms claim", "out of memory",
};

/* base64url without padding of n bytes into out (4n/3 + 4 bytes); its length. */
static size_t
b64url(const uint8_t *in, size_t n, char *out)
{
	size_t len = (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);

	while (len > 0 && out[len - 1] == '=')
		len--;
	for (size_t i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return len;
}

/* Decoding then encoding gives the input back: only one text per byte string is taken. */
static void
check_b64(const uint8_t *data, size_t size)
{
	uint8_t out[AUTH_MAX_TOKEN];
	char back[AUTH_MAX_TOKEN * 2];
	int n;

	if (size > AUTH_MAX_TOKEN)
		size = AUTH_MAX_TOKEN;
	if ((n = auth_b64url_decode((const char *)data, size, out, sizeof(out))) < 0)
		return;
	CHECK((size_t)n == size * 6 / 8);
	CHECK(b64url(out, (size_t)n, back) == size && memcmp(back, data, size) == 0);
	/* A buffer one byte short is never overrun. */
	if (n > 0) {
		uint8_t *tight = malloc(n > 1 ? (size_t)n - 1 : 1);

		if (tight != NULL) {
			CHECK(auth_b64url_decode((const char *)data, size, tight, (size_t)n - 1) == -1);
			free(tight);
		}
	}
}

/* Verify tok; on success the identity must agree with claims (a C string; NULL: unknown). */
static int
check_verify(const char *tok, size_t len, const char *claims)
{
	struct auth_identity id;
	struct json_object *o = NULL, *x;
	const char *why = NULL;
	int rc = auth_verify(tok, len, (const uint8_t *)SECRET, strlen(SECRET), NOW, 5, &id, &why);
	int known = 0;

	if (rc == -1) {
		CHECK(id.sub == NULL && id.rooms == NULL);
		for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
			known |= why != NULL && strcmp(why, reasons[i]) == 0;
		CHECK(known);
		return -1;
	}
	CHECK(rc == 0 && id.sub != NULL && id.sub[0] != '\0');
	CHECK(id.nrooms >= 0 && id.nrooms <= AUTH_MAX_ROOMS);
	/* Read apart from auth.c: what it accepted is JSON, here without STRICT or a depth bound. */
	if (claims != NULL)
		CHECK((o = json_tokener_parse(claims)) != NULL);
	if (o != NULL && json_object_object_get_ex(o, "sub", &x))
		CHECK(strcmp(json_object_get_string(x), id.sub) == 0);
	if (o != NULL && json_object_object_get_ex(o, "rooms", &x) && x != NULL) {
		CHECK(id.rooms != NULL && (size_t)id.nrooms == json_object_array_length(x));
		for (size_t i = 0; i < json_object_array_length(x); i++) {
			struct json_object *r = json_object_array_get_idx(x, i);
			const char *s = json_object_get_string(r);
			size_t sl = (size_t)json_object_get_string_len(r);

			CHECK(auth_room_allowed(&id, s, sl));
		}
	} else if (o != NULL)
		CHECK(id.rooms == NULL && auth_room_allowed(&id, "any room", 8));
	json_object_put(o);
	auth_identity_free(&id);
	CHECK(id.sub == NULL && id.rooms == NULL);
	return 0;
}

/* Sign header and claims as an issuer would, then verify (and verify a forgery). */
static void
check_signed(const char *header, size_t hl, const char *claims, size_t cl)
{
	char *tok = malloc((hl + cl) * 4 / 3 + 128), *copy;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t n;

	if (tok == NULL)
		return;
	n = b64url((const uint8_t *)header, hl, tok);
	tok[n++] = '.';
	n += b64url((const uint8_t *)claims, cl, tok + n);
	if (HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)tok, n, mac, &maclen) == NULL) {
		free(tok);
		return;
	}
	tok[n++] = '.';
	n += b64url(mac, maclen, tok + n);
	/* An exact-size copy, so that any over-read trips ASan. */
	if ((copy = malloc(n)) != NULL) {
		memcpy(copy, tok, n);
		if (check_verify(copy, n, memchr(claims, '\0', cl) == NULL ? claims : NULL) == 0) {
			/* The same token with another signature is refused. */
			copy[n - 2] = copy[n - 2] == 'A' ? 'B' : 'A';
			CHECK(check_verify(copy, n, NULL) == -1);
		}
		free(copy);
	}
	free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf;
	const char *nl;

	if (size == 0 || size > 3 * AUTH_MAX_TOKEN / 4)
		return 0;
	if ((buf = malloc(size)) == NULL)
		return 0;
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	check_b64(data + 1, size - 1);
	if ((data[0] & 1) == 0)
		(void)check_verify(buf, size - 1, NULL);
	else if ((nl = memchr(buf, '\n', size - 1)) != NULL)
		check_signed(buf, (size_t)(nl - buf), nl + 1, size - 1 - (size_t)(nl + 1 - buf));
	else
		check_signed("{\"alg\":\"HS256\"}", 15, buf, size - 1);
	free(buf);
	return 0;
}
