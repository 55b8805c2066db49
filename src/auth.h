/*
 * auth.h: HS256 JSON Web Tokens. Verifies the signature in constant time,
 * refuses every algorithm but HS256, checks exp and nbf, and yields the
 * user name (sub) and the rooms the token allows.
 */
#ifndef ROOMD_AUTH_H
#define ROOMD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define AUTH_MAX_TOKEN	4096
#define AUTH_MAX_ROOMS	64

struct auth_identity {
	char	*sub;		/* the user name */
	char	*rooms;		/* the allowed rooms, NUL-separated; NULL: any room */
	int	 nrooms;
	long long exp;		/* seconds since the epoch; 0 if none */
};

/*
 * Verify token with secret at time now (seconds); leeway seconds of clock
 * skew are allowed. 0 and id filled, or -1 with *why set. The caller frees
 * id with auth_identity_free.
 */
int auth_verify(const char *token, size_t len, const uint8_t *secret, size_t slen, long long now,
    int leeway, struct auth_identity *id, const char **why) MUST_CHECK;
void auth_identity_free(struct auth_identity *);
/* Whether the identity may enter room. */
int auth_room_allowed(const struct auth_identity *, const char *room, size_t rl);
/* base64url without padding; returns the decoded length or -1. */
int auth_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outlen);

#endif
