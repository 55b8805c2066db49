/*
 * echo.c: the echo route. Every message goes back to its sender as it came,
 * in the same block (framed in its headroom): for conformance suites and
 * load tests.
 */
#include "echo.h"
#include "proto.h"

static void
echo_message(struct session *s, int opcode, struct sbuf *b)
{
	ws_send_message(s, opcode, b);
}

/* No protocol of its own: a refused client hears the tutorial's noAuth before 4001. */
static void
echo_refuse(struct session *s, enum ws_refusal why)
{
	if (why == WS_REFUSED_AUTH)
		ws_send_text(s, PROTO_NOAUTH, sizeof(PROTO_NOAUTH) - 1);
}

const struct route_ops echo_route = {
	.message = echo_message,
	.refuse = echo_refuse,
	.rate_mode = WS_RATE_PACE,
};
