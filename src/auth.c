/*
 * auth.c: JWT (RFC 7519) with HMAC-SHA256 (RFC 7518 3.2) only. The header
 * must name HS256: "none" and asymmetric algorithms are refused, so a token
 * cannot choose how it is checked. The signature is compared with
 * CRYPTO_memcmp, in constant time.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"

int
auth_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outlen)
{
	uint32_t acc = 0;
	size_t o = 0;
	int bits = 0;

	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)in[i], v;

		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '-')
			v = 62;
		else if (c == '_')
			v = 63;
		else
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outlen)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* Leftover bits must be zero (canonical encoding). */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (int)o;
}

/*
 * Whether x is a JSON string without NUL: a "\u0000" inside would cut the
 * C string that the rest of roomd sees ("admin\u0000x" read as "admin").
 */
static int
is_c_string(struct json_object *x)
{
	return json_object_is_type(x, json_type_string) &&
	    memchr(json_object_get_string(x), '\0', (size_t)json_object_get_string_len(x)) == NULL;
}

/* Decode a base64url JSON object part; NULL on error. */
static struct json_object *
decode_json(const char *p, size_t n)
{
	uint8_t buf[AUTH_MAX_TOKEN];
	struct json_tokener *tok;
	struct json_object *o;
	int len = auth_b64url_decode(p, n, buf, sizeof(buf));

	if (len <= 0 || (tok = json_tokener_new_ex(8)) == NULL)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, (const char *)buf, len);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != (size_t)len || !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* A numeric claim: 1 present (in *v), 0 absent, -1 wrong type (null included). */
static int
num_claim(struct json_object *o, const char *k, long long *v)
{
	struct json_object *x;
	double d;

	if (!json_object_object_get_ex(o, k, &x))
		return 0;
	if (x == NULL)
		return -1;
	if (json_object_is_type(x, json_type_int)) {
		*v = json_object_get_int64(x);	/* json-c saturates at the int64 bounds */
		return 1;
	}
	if (!json_object_is_type(x, json_type_double) || isnan(d = json_object_get_double(x)))
		return -1;
	/* Saturate too: converting 1e300 to long long would be undefined. */
	*v = d >= 0x1p63 ? LLONG_MAX : d < -0x1p63 ? LLONG_MIN : (long long)d;
	return 1;
}

static int
refuse(const char **why, const char *w, struct json_object *a, struct json_object *b)
{
	*why = w;
	if (a != NULL)
		json_object_put(a);
	if (b != NULL)
		json_object_put(b);
	return -1;
}

int
auth_verify(const char *token, size_t len, const uint8_t *secret, size_t slen, long long now,
    int leeway, struct auth_identity *id, const char **why)
{
	const char *d1, *d2;
	struct json_object *hdr = NULL, *claims = NULL, *x;
	uint8_t sig[64], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	long long t;
	int siglen, rc;

	memset(id, 0, sizeof(*id));
	if (len == 0 || len > AUTH_MAX_TOKEN)
		return refuse(why, "token missing or too long", NULL, NULL);
	if ((d1 = memchr(token, '.', len)) == NULL ||
	    (d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))) == NULL ||
	    memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
		return refuse(why, "not a JWT", NULL, NULL);
	if ((hdr = decode_json(token, (size_t)(d1 - token))) == NULL)
		return refuse(why, "bad token header", NULL, NULL);
	if (!json_object_object_get_ex(hdr, "alg", &x) || !is_c_string(x) ||
	    strcmp(json_object_get_string(x), "HS256") != 0)
		return refuse(why, "token algorithm is not HS256", hdr, NULL);
	siglen = auth_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), sig, sizeof(sig));
	if (HMAC(EVP_sha256(), secret, (int)slen, (const unsigned char *)token, (size_t)(d2 - token),
	    mac, &maclen) == NULL || siglen != (int)maclen || maclen != 32 ||
	    CRYPTO_memcmp(sig, mac, maclen) != 0)
		return refuse(why, "bad token signature", hdr, NULL);
	if ((claims = decode_json(d1 + 1, (size_t)(d2 - d1 - 1))) == NULL)
		return refuse(why, "bad token claims", hdr, NULL);
	/* now - leeway, not t + leeway: t comes from the token and may be LLONG_MAX. */
	if ((rc = num_claim(claims, "exp", &t)) == -1 || (rc == 1 && now - leeway >= t))
		return refuse(why, rc == -1 ? "bad exp claim" : "token expired", hdr, claims);
	id->exp = rc == 1 ? t : 0;
	if ((rc = num_claim(claims, "nbf", &t)) == -1 || (rc == 1 && now + leeway < t))
		return refuse(why, rc == -1 ? "bad nbf claim" : "token not valid yet", hdr, claims);
	if (!json_object_object_get_ex(claims, "sub", &x) || !is_c_string(x) ||
	    json_object_get_string_len(x) == 0)
		return refuse(why, "token has no sub", hdr, claims);
	if ((id->sub = strdup(json_object_get_string(x))) == NULL)
		return refuse(why, "out of memory", hdr, claims);
	if (json_object_object_get_ex(claims, "rooms", &x) && x != NULL) {
		size_t n, total = 0, o = 0;

		if (!json_object_is_type(x, json_type_array) ||
		    (n = json_object_array_length(x)) > AUTH_MAX_ROOMS) {
			auth_identity_free(id);
			return refuse(why, "bad rooms claim", hdr, claims);
		}
		for (size_t i = 0; i < n; i++) {
			struct json_object *r = json_object_array_get_idx(x, i);

			if (!is_c_string(r)) {
				auth_identity_free(id);
				return refuse(why, "bad rooms claim", hdr, claims);
			}
			total += (size_t)json_object_get_string_len(r) + 1;
		}
		if ((id->rooms = malloc(total + 1)) == NULL) {
			auth_identity_free(id);
			return refuse(why, "out of memory", hdr, claims);
		}
		for (size_t i = 0; i < n; i++) {
			struct json_object *r = json_object_array_get_idx(x, i);
			size_t l = (size_t)json_object_get_string_len(r);

			memcpy(id->rooms + o, json_object_get_string(r), l);
			id->rooms[o + l] = '\0';
			o += l + 1;
		}
		id->nrooms = (int)n;
	}
	json_object_put(hdr);
	json_object_put(claims);
	return 0;
}

void
auth_identity_free(struct auth_identity *id)
{
	free(id->sub);
	free(id->rooms);
	memset(id, 0, sizeof(*id));
}

int
auth_room_allowed(const struct auth_identity *id, const char *room, size_t rl)
{
	const char *p;

	if (id->rooms == NULL)
		return 1;
	p = id->rooms;
	for (int i = 0; i < id->nrooms; i++) {
		size_t l = strlen(p);

		if (l == rl && memcmp(p, room, rl) == 0)
			return 1;
		p += l + 1;
	}
	return 0;
}
