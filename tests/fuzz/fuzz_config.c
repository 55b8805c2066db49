/*
 * fuzz_config.c: libFuzzer target for the config parser. Each input is a
 * config text: cfg_new, cfg_load_text, cfg_finish, cfg_free, with no crash
 * or leak; an error reads "fuzz.conf:N: what" with N a line of the text
 * (or "config: what" from cfg_finish); a config that loads and finishes
 * dumps to a text that loads back to the same dump.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, \
	__FILE__, __LINE__); abort(); } } while (0)

/*
 * A listen line resolves its host with getaddrinfo(): a fuzzer must send no
 * DNS query, so every host must be numeric here. (This definition comes
 * before libc's; the real one is found with RTLD_NEXT.)
 */
int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
	struct addrinfo h;

	if (real == NULL && (real = (int (*)(const char *, const char *, const struct addrinfo *,
	    struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo")) == NULL)
		return EAI_SYSTEM;
	memset(&h, 0, sizeof(h));
	if (hints != NULL)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

/* cfg_dump into a malloc'd string. */
static char *
dump(const struct config *c)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	if (f == NULL)
		return NULL;
	cfg_dump(c, f);
	if (fclose(f) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

/*
 * A parse error names the text and a line in it; a cfg_finish error, which
 * is about keys together, says "config: " (the text recorded no path).
 */
static void
check_error(const char *err, int lines, int finish)
{
	char *end;
	long line;

	if (finish) {
		CHECK(strncmp(err, "config: ", 8) == 0 && err[8] != '\0');
		return;
	}
	CHECK(strncmp(err, "fuzz.conf:", 10) == 0);
	line = strtol(err + 10, &end, 10);
	CHECK(line >= 1 && line <= lines && end[0] == ':' && end[1] == ' ' && end[2] != '\0');
}

/* Whether a dump can be read back as the same settings (see the note below). */
static int
dump_is_exact(const char *d)
{
	/*
	 * auth_secret is masked in dumps; "********" is then too short for auth.
	 * So is every api_key, and 8 bytes is too short for a key.
	 */
	return strstr(d, "\nauth_secret ") == NULL && strstr(d, "\napi_key ") == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CFG_ERR_LEN], err2[CFG_ERR_LEN];
	struct config *c, *c2;
	char *text, *d, *d2;
	int lines = 1;

	if (size > 64 * 1024)
		return 0;
	/* An exact-size copy, so that any over-read trips ASan. */
	if ((text = malloc(size > 0 ? size : 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	for (size_t i = 0; i < size; i++)
		lines += text[i] == '\n';
	if ((c = cfg_new()) == NULL) {
		free(text);
		return 0;
	}
	err[0] = '\0';
	if (cfg_load_text(c, "fuzz.conf", text, size, err, sizeof(err)) == -1)
		check_error(err, lines, 0);
	else if (cfg_finish(c, err, sizeof(err)) == -1)
		check_error(err, lines, 1);
	else if ((d = dump(c)) != NULL) {
		/* The dump is itself a config (roomd -T): it loads to the same dump. */
		if (dump_is_exact(d) && (c2 = cfg_new()) != NULL) {
			err2[0] = '\0';
			if (cfg_load_text(c2, "fuzz.conf", d, strlen(d), err2, sizeof(err2)) == -1 ||
			    cfg_finish(c2, err2, sizeof(err2)) == -1) {
				fprintf(stderr, "dump does not load back: %s\n--- dump:\n%s", err2, d);
				CHECK(!"the dump loads back");
			}
			d2 = dump(c2);
			if (d2 != NULL && strcmp(d, d2) != 0)
				fprintf(stderr, "--- dump:\n%s--- its dump:\n%s", d, d2);
			CHECK(d2 != NULL && strcmp(d, d2) == 0);
			free(d2);
			cfg_free(c2);
		}
		free(d);
	}
	cfg_free(c);
	free(text);
	return 0;
}
