/*
 * test_auth.c: HS256 JSON Web Tokens (src/auth.c): base64url decoding and
 * its canonical form, the signature, the algorithm, exp and nbf with leeway,
 * sub and the rooms claim, and the reason given for each refusal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "tap.h"

#define SECRET	"0123456789abcdef-test-secret"
#define NOW	1700000000LL
#define LEEWAY	5

/* base64url without padding of n bytes into out (NUL-terminated); its length. */
static size_t
b64url(const void *in, size_t n, char *out)
{
	size_t len = (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);

	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (size_t i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return len;
}

/* header.claims.signature, signed with secret (static buffer). */
static const char *
token(const char *header, const char *claims, const char *secret)
{
	static char t[3][AUTH_MAX_TOKEN * 2];
	static int k;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char *p = t[k = (k + 1) % 3];
	size_t n;

	n = b64url(header, strlen(header), p);
	p[n++] = '.';
	n += b64url(claims, strlen(claims), p + n);
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)p, n, mac, &maclen) == NULL) {
		printf("Bail out! HMAC failed\n");
		exit(1);
	}
	p[n++] = '.';
	b64url(mac, maclen, p + n);
	return p;
}

#define HS256	"{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* Verify tok at NOW; the reason on refusal, "ok" on success (id kept in *id). */
static const char *
verify(const char *tok, struct auth_identity *id)
{
	static struct auth_identity scratch;
	const char *why = "(not set)";

	if (id == NULL)
		id = &scratch;
	if (auth_verify(tok, strlen(tok), (const uint8_t *)SECRET, strlen(SECRET), NOW, LEEWAY, id, &why) == 0) {
		if (id == &scratch)
			auth_identity_free(id);
		return "ok";
	}
	if (id->sub != NULL || id->rooms != NULL)
		return "(refused, but the identity holds memory)";
	return why;
}

static const char *
claims_verify(const char *claims)
{
	return verify(token(HS256, claims, SECRET), NULL);
}

static void
test_b64url(void)
{
	static const struct { const char *in; int len; const char *out; } cases[] = {
		{ "", 0, "" },
		{ "QQ", 1, "A" },
		{ "QUI", 2, "AB" },
		{ "QUJD", 3, "ABC" },
		{ "QUJDRA", 4, "ABCD" },
		{ "-_8", 2, "\xfb\xff" },
		{ "AAA", 2, "\0\0" },
	};
	static const char *const bad[] = {
		"Q", "QUJDR", "QR", "QUJ", "QUI=", "QQ==", "+/8", "QU JD", "QU\nJD", "QUJ\x80",
	};
	uint8_t out[16];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = auth_b64url_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out));

		ok(n == cases[i].len && memcmp(out, cases[i].out, (size_t)cases[i].len) == 0,
		    "'%s' decodes to %d bytes", cases[i].in, cases[i].len);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(auth_b64url_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1,
		    "bad[%zu] is refused (length, padding, alphabet or non-zero spare bits)", i);
	is_int(auth_b64url_decode("QUJD", 4, out, 3), 3, "three bytes fit in three");
	is_int(auth_b64url_decode("QUJD", 4, out, 2), -1, "and not in two");
	is_int(auth_b64url_decode("QUJDRA", 4, out, sizeof(out)), 3, "only n bytes are read");
}

static void
test_good(void)
{
	struct auth_identity id;
	char claims[256];

	is_str(verify(token(HS256, "{\"sub\":\"ann\"}", SECRET), &id), "ok", "a signed token with a sub");
	is_str(id.sub, "ann", "sub");
	ok(id.rooms == NULL && id.exp == 0, "no rooms claim: any room; no exp: 0");
	ok(auth_room_allowed(&id, "lobby", 5) && auth_room_allowed(&id, "x", 1), "any room is allowed");
	auth_identity_free(&id);
	ok(id.sub == NULL && id.rooms == NULL, "auth_identity_free clears");
	auth_identity_free(&id);
	ok(1, "and may be called twice");

	snprintf(claims, sizeof(claims), "{\"sub\":\"bob\",\"exp\":%lld,\"nbf\":%lld,\"iat\":%lld}",
	    NOW + 60, NOW - 60, NOW - 60);
	is_str(verify(token(HS256, claims, SECRET), &id), "ok", "exp, nbf and iat");
	is_int(id.exp, NOW + 60, "exp is kept");
	auth_identity_free(&id);
	is_str(verify(token("{\"typ\":\"JWT\",\"alg\":\"HS256\",\"kid\":\"k1\"}", "{\"sub\":\"c\"}", SECRET),
	    NULL), "ok", "other header fields, in any order");
	is_str(verify(token(" {\"alg\":\"HS256\"}\n", "{\"sub\":\"c\"} ", SECRET), NULL), "ok",
	    "white space around the JSON");
	is_str(verify(token("{\"alg\":\"HS256\"}", "{\"sub\":\"\\u00e9l\\u00e8ve\"}", SECRET), &id), "ok",
	    "an escaped sub");
	is_str(id.sub, "\xc3\xa9l\xc3\xa8ve", "sub is unescaped");
	auth_identity_free(&id);
	snprintf(claims, sizeof(claims), "{\"sub\":\"d\",\"exp\":%lld.5}", NOW + 10);
	is_str(claims_verify(claims), "ok", "a fractional exp");
	is_str(claims_verify("{\"sub\":\"e\",\"exp\":1e10}"), "ok", "an exp in exponent form");
}

static void
test_times(void)
{
	char claims[128];

	snprintf(claims, sizeof(claims), "{\"sub\":\"a\",\"exp\":%lld}", NOW - LEEWAY + 1);
	is_str(claims_verify(claims), "ok", "exp within the leeway is still good");
	snprintf(claims, sizeof(claims), "{\"sub\":\"a\",\"exp\":%lld}", NOW - LEEWAY);
	is_str(claims_verify(claims), "token expired", "exp at now - leeway has expired");
	snprintf(claims, sizeof(claims), "{\"sub\":\"a\",\"exp\":%lld}", NOW - 3600);
	is_str(claims_verify(claims), "token expired", "an hour ago has expired");
	is_str(claims_verify("{\"sub\":\"a\",\"exp\":0}"), "token expired", "exp 0 has expired");
	snprintf(claims, sizeof(claims), "{\"sub\":\"a\",\"nbf\":%lld}", NOW + LEEWAY);
	is_str(claims_verify(claims), "ok", "nbf at now + leeway is good");
	snprintf(claims, sizeof(claims), "{\"sub\":\"a\",\"nbf\":%lld}", NOW + LEEWAY + 1);
	is_str(claims_verify(claims), "token not valid yet", "nbf after now + leeway is not");
	/* Numbers at and past the ends of long long (fuzz_auth found t + leeway overflowing). */
	is_str(claims_verify("{\"sub\":\"a\",\"exp\":9223372036854775807}"), "ok", "exp LLONG_MAX");
	is_str(claims_verify("{\"sub\":\"a\",\"exp\":99999999999999999999999}"), "ok", "exp past LLONG_MAX");
	is_str(claims_verify("{\"sub\":\"a\",\"exp\":1e300}"), "ok", "exp 1e300");
	is_str(claims_verify("{\"sub\":\"a\",\"exp\":1e999}"), "ok", "exp 1e999 (infinity)");
	is_str(claims_verify("{\"sub\":\"a\",\"exp\":-9223372036854775808}"), "token expired",
	    "exp LLONG_MIN");
	is_str(claims_verify("{\"sub\":\"a\",\"exp\":-1e300}"), "token expired", "exp -1e300");
	is_str(claims_verify("{\"sub\":\"a\",\"nbf\":-1e300}"), "ok", "nbf -1e300");
	is_str(claims_verify("{\"sub\":\"a\",\"nbf\":-99999999999999999999999}"), "ok", "nbf before LLONG_MIN");
	is_str(claims_verify("{\"sub\":\"a\",\"nbf\":1e300}"), "token not valid yet", "nbf 1e300");
	is_str(claims_verify("{\"sub\":\"a\",\"nbf\":9223372036854775807}"), "token not valid yet",
	    "nbf LLONG_MAX");
	is_str(claims_verify("{\"sub\":\"a\",\"exp\":\"1700000100\"}"), "bad exp claim", "exp as a string");
	is_str(claims_verify("{\"sub\":\"a\",\"exp\":null}"), "bad exp claim", "exp null is not \"no exp\"");
	is_str(claims_verify("{\"sub\":\"a\",\"nbf\":null}"), "bad nbf claim", "nbf null");
	is_str(claims_verify("{\"sub\":\"a\",\"nbf\":true}"), "bad nbf claim", "nbf true");
	is_str(claims_verify("{\"sub\":\"a\",\"nbf\":[1]}"), "bad nbf claim", "nbf an array");
}

static void
test_refused(void)
{
	static const struct { const char *header, *claims, *secret, *why; } cases[] = {
		{ "{\"alg\":\"none\"}", "{\"sub\":\"a\"}", SECRET, "token algorithm is not HS256" },
		{ "{\"alg\":\"HS384\"}", "{\"sub\":\"a\"}", SECRET, "token algorithm is not HS256" },
		{ "{\"alg\":\"RS256\"}", "{\"sub\":\"a\"}", SECRET, "token algorithm is not HS256" },
		{ "{\"alg\":\"hs256\"}", "{\"sub\":\"a\"}", SECRET, "token algorithm is not HS256" },
		{ "{\"alg\":\"HS256\\u0000\"}", "{\"sub\":\"a\"}", SECRET, "token algorithm is not HS256" },
		{ "{\"typ\":\"JWT\"}", "{\"sub\":\"a\"}", SECRET, "token algorithm is not HS256" },
		{ "{\"alg\":[\"HS256\"]}", "{\"sub\":\"a\"}", SECRET, "token algorithm is not HS256" },
		{ HS256, "{\"sub\":\"a\"}", SECRET "x", "bad token signature" },
		{ HS256, "{\"sub\":\"a\"}", "", "bad token signature" },
		{ "[\"alg\",\"HS256\"]", "{\"sub\":\"a\"}", SECRET, "bad token header" },
		{ "{\"alg\":\"HS256\",}", "{\"sub\":\"a\"}", SECRET, "bad token header" },
		{ "{\"alg\":\"HS256\"}{}", "{\"sub\":\"a\"}", SECRET, "bad token header" },
		{ "", "{\"sub\":\"a\"}", SECRET, "bad token header" },
		{ HS256, "", SECRET, "bad token claims" },
		{ HS256, "\"sub\"", SECRET, "bad token claims" },
		{ HS256, "{'sub':'a'}", SECRET, "bad token claims" },
		{ HS256, "{\"sub\":\"a\"", SECRET, "bad token claims" },
		{ HS256, "{\"a\":[[[[[[[[[1]]]]]]]]],\"sub\":\"a\"}", SECRET, "bad token claims" },
		{ HS256, "{}", SECRET, "token has no sub" },
		{ HS256, "{\"sub\":\"\"}", SECRET, "token has no sub" },
		{ HS256, "{\"sub\":42}", SECRET, "token has no sub" },
		{ HS256, "{\"sub\":null}", SECRET, "token has no sub" },
		{ HS256, "{\"sub\":\"admin\\u0000x\"}", SECRET, "token has no sub" },
		{ HS256, "{\"sub\":\"a\",\"rooms\":\"lobby\"}", SECRET, "bad rooms claim" },
		{ HS256, "{\"sub\":\"a\",\"rooms\":[\"lobby\",1]}", SECRET, "bad rooms claim" },
		{ HS256, "{\"sub\":\"a\",\"rooms\":[null]}", SECRET, "bad rooms claim" },
		{ HS256, "{\"sub\":\"a\",\"rooms\":{\"lobby\":1}}", SECRET, "bad rooms claim" },
		{ HS256, "{\"sub\":\"a\",\"rooms\":[\"x\\u0000lobby\"]}", SECRET, "bad rooms claim" },
	};
	char tok[AUTH_MAX_TOKEN + 64], claims[1024];
	char good[256];
	size_t n;

	snprintf(good, sizeof(good), "%s", token(HS256, "{\"sub\":\"a\"}", SECRET));

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_str(verify(token(cases[i].header, cases[i].claims, cases[i].secret), NULL), cases[i].why,
		    "%s . %s: %s", cases[i].header, cases[i].claims, cases[i].why);

	/* The shape of the token itself. */
	is_str(verify("", NULL), "token missing or too long", "an empty token");
	is_str(verify("abc", NULL), "not a JWT", "no dot");
	is_str(verify("a.b", NULL), "not a JWT", "one dot");
	snprintf(tok, sizeof(tok), "%s.", good);
	is_str(verify(tok, NULL), "not a JWT", "three dots");
	snprintf(tok, sizeof(tok), "%s=", good);
	is_str(verify(tok, NULL), "bad token signature", "a padded signature");
	snprintf(tok, sizeof(tok), "%s", good);
	n = strlen(tok);
	tok[n - 2] = tok[n - 2] == 'A' ? 'B' : 'A';
	is_str(verify(tok, NULL), "bad token signature", "one signature character changed");
	snprintf(tok, sizeof(tok), "%s", good);
	tok[n - 1] = '\0';
	is_str(verify(tok, NULL), "bad token signature", "the signature's last character gone");
	snprintf(tok, sizeof(tok), "%s", good);
	*strrchr(tok, '.') = '\0';
	strcat(tok, ".");
	is_str(verify(tok, NULL), "bad token signature", "an empty signature");
	/* Claims changed after signing: "sub":"a" -> "sub":"b". */
	snprintf(tok, sizeof(tok), "%s", good);
	{
		char *c = strchr(tok, '.') + 1, *d = strchr(c, '.');
		char other[64];

		b64url("{\"sub\":\"b\"}", 11, other);
		ok(strlen(other) == (size_t)(d - c), "(the forged claims are as long)");
		memcpy(c, other, strlen(other));
	}
	is_str(verify(tok, NULL), "bad token signature", "claims changed after signing");

	/* Length: AUTH_MAX_TOKEN bytes may be checked, one more is refused unread. */
	memset(claims, 0, sizeof(claims));
	snprintf(claims, sizeof(claims), "{\"sub\":\"a\",\"pad\":\"");
	memset(claims + strlen(claims), 'p', 600);
	strcat(claims, "\"}");
	ok(strlen(token(HS256, claims, SECRET)) < AUTH_MAX_TOKEN, "(a token under the limit)");
	is_str(claims_verify(claims), "ok", "a long token under the limit");
	memset(tok, 'A', sizeof(tok));
	tok[10] = '.';
	tok[20] = '.';
	tok[AUTH_MAX_TOKEN + 1] = '\0';
	is_str(verify(tok, NULL), "token missing or too long", "a token over AUTH_MAX_TOKEN");
	tok[AUTH_MAX_TOKEN] = '\0';
	is_str(verify(tok, NULL), "bad token header", "AUTH_MAX_TOKEN bytes are looked at");
}

static void
test_rooms(void)
{
	struct auth_identity id;
	char claims[AUTH_MAX_TOKEN];
	size_t n;

	is_str(verify(token(HS256, "{\"sub\":\"a\",\"rooms\":[\"lobby\",\"dev\",\"\\u00e9t\\u00e9\"]}",
	    SECRET), &id), "ok", "a rooms claim");
	is_int(id.nrooms, 3, "three rooms");
	ok(auth_room_allowed(&id, "lobby", 5), "lobby is allowed");
	ok(auth_room_allowed(&id, "dev", 3), "dev is allowed");
	ok(auth_room_allowed(&id, "\xc3\xa9t\xc3\xa9", 5), "an escaped name is allowed unescaped");
	ok(!auth_room_allowed(&id, "lob", 3), "a prefix is not");
	ok(!auth_room_allowed(&id, "lobbyx", 6), "a longer name is not");
	ok(!auth_room_allowed(&id, "Lobby", 5), "names are case-sensitive");
	ok(!auth_room_allowed(&id, "devlobby", 8), "two names run together are not one");
	ok(!auth_room_allowed(&id, "", 0), "the empty name is not");
	ok(!auth_room_allowed(&id, "dev\0x", 5), "a name with a NUL after an allowed one is not");
	auth_identity_free(&id);

	is_str(verify(token(HS256, "{\"sub\":\"a\",\"rooms\":[]}", SECRET), &id), "ok", "an empty rooms claim");
	ok(id.rooms != NULL && id.nrooms == 0, "holds no room");
	ok(!auth_room_allowed(&id, "lobby", 5), "so no room is allowed");
	auth_identity_free(&id);
	is_str(verify(token(HS256, "{\"sub\":\"a\",\"rooms\":null}", SECRET), &id), "ok", "rooms null");
	ok(id.rooms == NULL && auth_room_allowed(&id, "lobby", 5), "is no restriction");
	auth_identity_free(&id);

	/* At most AUTH_MAX_ROOMS. */
	n = (size_t)snprintf(claims, sizeof(claims), "{\"sub\":\"a\",\"rooms\":[");
	for (int i = 0; i < AUTH_MAX_ROOMS; i++)
		n += (size_t)snprintf(claims + n, sizeof(claims) - n, "%s\"r%d\"", i ? "," : "", i);
	snprintf(claims + n, sizeof(claims) - n, "]}");
	is_str(verify(token(HS256, claims, SECRET), &id), "ok", "%d rooms", AUTH_MAX_ROOMS);
	ok(id.nrooms == AUTH_MAX_ROOMS && auth_room_allowed(&id, "r0", 2) && auth_room_allowed(&id, "r63", 3) &&
	    !auth_room_allowed(&id, "r64", 3), "the first and the last are allowed, no other");
	auth_identity_free(&id);
	snprintf(claims + n, sizeof(claims) - n, ",\"r64\"]}");
	is_str(claims_verify(claims), "bad rooms claim", "%d rooms", AUTH_MAX_ROOMS + 1);
}

int
main(void)
{
	test_b64url();
	test_good();
	test_times();
	test_refused();
	test_rooms();
	return tap_done();
}
