/*
 * ws_frame.h: the RFC 6455 frame codec, on buffers only. The decoder is
 * incremental (any split of the input), unmasks in place, validates text as
 * UTF-8 as the bytes arrive, and enforces every protocol limit. The
 * builders make a whole server frame in one shared block, plain or
 * compressed (permessage-deflate), to be queued to many sessions.
 */
#ifndef ROOMD_WS_FRAME_H
#define ROOMD_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "sbuf.h"
#include "utf8.h"

#define WS_OP_CONT	0x0
#define WS_OP_TEXT	0x1
#define WS_OP_BINARY	0x2
#define WS_OP_CLOSE	0x8
#define WS_OP_PING	0x9
#define WS_OP_PONG	0xa

#define WS_CLOSE_NORMAL		1000
#define WS_CLOSE_GOING_AWAY	1001
#define WS_CLOSE_PROTOCOL	1002
#define WS_CLOSE_UNSUPPORTED	1003
#define WS_CLOSE_NO_STATUS	1005	/* never sent */
#define WS_CLOSE_BAD_DATA	1007
#define WS_CLOSE_POLICY		1008
#define WS_CLOSE_TOO_BIG	1009
#define WS_CLOSE_INTERNAL	1011
#define WS_CLOSE_AUTH		4001	/* roomd's own: no valid token, or it expired */

#define WS_MAX_HEADER		14	/* 2 + 8 length + 4 mask */
#define WS_MAX_SERVER_HEADER	10	/* server frames are not masked */
#define WS_MAX_CONTROL		125

enum ws_ev_type {
	WS_EV_NEED,	/* every byte consumed; feed more */
	WS_EV_DATA,	/* a piece of a text/binary message */
	WS_EV_CONTROL,	/* a complete ping, pong or close frame */
	WS_EV_ERROR,	/* fail the connection with code */
};

struct ws_event {
	enum ws_ev_type	 type;
	uint8_t		 opcode;	/* DATA: the message's opcode; CONTROL: the frame's */
	uint8_t		 rsv1;		/* DATA: the message's RSV1 (compressed) */
	uint8_t		 msg_end;	/* DATA: this piece ends the message */
	uint8_t		 msg_start;	/* DATA: this piece starts the message */
	const uint8_t	*data;
	size_t		 len;
	uint64_t	 frame_left;	/* DATA: bytes of the current frame still to come */
	uint16_t	 code;		/* ERROR: close code */
	const char	*reason;	/* ERROR: short text */
};

struct ws_decoder {
	uint64_t	max_message;	/* limit on a whole message's payload */
	uint8_t		allow_rsv1;	/* permessage-deflate negotiated */
	uint8_t		validate_utf8;	/* off while text arrives compressed */
	/* header assembly */
	uint8_t		hdr[WS_MAX_HEADER];
	uint8_t		hdr_have;
	uint8_t		in_payload;
	/* the current frame */
	uint8_t		opcode, fin, rsv1;
	uint8_t		mask[4];
	uint64_t	left;		/* payload bytes still to come */
	uint64_t	mask_pos;
	/* the current fragmented message */
	uint8_t		msg_opcode;	/* 0: none in progress */
	uint8_t		msg_rsv1;
	uint8_t		msg_started;	/* a DATA piece of it was emitted */
	uint64_t	msg_len;
	struct utf8	utf8;
	/* the current control frame */
	uint8_t		ctl_len;
	uint8_t		ctl[WS_MAX_CONTROL];
};

void ws_decoder_init(struct ws_decoder *, uint64_t max_message);
/*
 * Consume bytes from buf (unmasking them in place) until one event is ready.
 * Returns the number of bytes consumed; ev says what happened. DATA and
 * CONTROL pointers are valid until the next call. After ERROR stop feeding.
 */
size_t ws_decode(struct ws_decoder *, uint8_t *buf, size_t len, struct ws_event *ev);

/* Write a server (unmasked) frame header; returns its length (2, 4 or 10). */
size_t ws_header(uint8_t *out, int fin, int rsv1, int opcode, uint64_t len);
/* Write a client (masked) frame header with mask; returns its length. */
size_t ws_header_masked(uint8_t *out, int fin, int opcode, uint64_t len, const uint8_t mask[4]);
/* XOR data with mask starting at mask offset pos (word at a time). */
void ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t pos);

/* Build a complete server frame (header + payload) in one shared block. */
struct sbuf *ws_frame_new(int opcode, const void *payload, size_t len) MUST_CHECK;
/* A complete compressed (RSV1) frame, or NULL if compression does not pay or fails. */
struct sbuf *ws_frame_deflate(int bits, int opcode, const void *payload, size_t len) MUST_CHECK;

/*
 * Check a received close payload: returns 0 and sets code (1005 when empty)
 * and the reason, or returns the close code to fail with (1002 or 1007).
 */
int ws_close_parse(const uint8_t *p, size_t len, uint16_t *code, const uint8_t **reason, size_t *rlen);
/* Whether a peer may send this close code (1000-1003, 1007-1014, 3000-4999). */
int ws_close_code_valid(unsigned code);

#endif
