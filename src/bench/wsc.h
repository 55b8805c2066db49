/*
 * wsc.h: the client side of RFC 6455 on buffers only (no I/O): the opening
 * handshake request and its response check, masked frame encoding, an
 * incremental decoder of server frames, and permessage-deflate (RFC 7692)
 * with no context kept in either direction.
 */
#ifndef ROOMD_BENCH_WSC_H
#define ROOMD_BENCH_WSC_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#define WSC_KEY_LEN		24	/* base64 of a 16-byte nonce */
#define WSC_MAX_FRAME_HEADER	14
#define WSC_MAX_CONTROL		125
#define WSC_DEFAULT_MAX_MESSAGE	((uint64_t)64 << 20)
/* The only permessage-deflate offer: every message compressed on its own. */
#define WSC_PMD_OFFER	"permessage-deflate; client_no_context_takeover; server_no_context_takeover"

enum wsc_ev_type {
	WSC_NEED,	/* every byte consumed; feed more */
	WSC_MESSAGE,	/* a complete text or binary message */
	WSC_CONTROL,	/* a complete ping, pong or close frame */
	WSC_ERROR,	/* the stream cannot be followed: close the connection */
};

struct wsc_ev {
	enum wsc_ev_type type;
	uint8_t		 opcode;
	const uint8_t	*data;		/* valid until the next wsc_decode call */
	size_t		 len;
	uint8_t		 compressed;	/* WSC_MESSAGE: RSV1 was set; inflate it */
	const char	*error;		/* WSC_ERROR: why */
};

struct wsc_decoder {
	uint64_t	 max_message;
	uint8_t		 pmd;		/* permessage-deflate negotiated: RSV1 marks compression */
	/* the frame header being assembled */
	uint8_t		 hdr[WSC_MAX_FRAME_HEADER];
	uint8_t		 hdr_have;
	/* the frame whose payload is arriving */
	uint8_t		 in_payload;
	uint8_t		 op, fin, masked, skip;
	uint8_t		 mask[4];
	uint64_t	 left;		/* payload bytes still to come */
	uint64_t	 pos;		/* payload bytes seen (mask phase) */
	/* the data message being assembled across frames or reads */
	uint8_t		 msg_op;	/* 0: none in progress */
	uint8_t		 msg_compressed; /* its first frame had RSV1 */
	uint8_t		 msg_emitted;	/* msg was handed out; reset on next call */
	uint8_t		*msg;
	size_t		 msg_len, msg_cap;
	/* the control frame being assembled */
	uint8_t		 ctl[WSC_MAX_CONTROL];
	size_t		 ctl_len;
	/* tolerated irregularities, counted */
	uint64_t	 proto_errors;	/* RSV bits, bad opcodes, bad control frames */
	uint64_t	 masked_frames;	/* servers must not mask */
	uint64_t	 fragmented;	/* messages that came in several frames */
};

/* A Sec-WebSocket-Key from a 16-byte nonce; key gets WSC_KEY_LEN chars and a NUL. */
void wsc_make_key(const uint8_t nonce[16], char key[WSC_KEY_LEN + 1]);
/*
 * Write the upgrade request into out, offering WSC_PMD_OFFER if deflate;
 * returns its length, or -1 if it does not fit.
 */
int wsc_request(char *out, size_t cap, const char *host, int port, const char *path,
    const char *key, int deflate) __attribute__((warn_unused_result));
/*
 * Check a complete response head (through the blank line): status 101,
 * Sec-WebSocket-Accept matching key, and no extension but an answer to our
 * offer (if offered): *deflate is 1 if the server took it. Returns 0, or -1
 * with *why set.
 */
int wsc_response_check(const char *head, size_t len, const char *key, int offered,
    int *deflate, const char **why) __attribute__((warn_unused_result));
/*
 * Whether one Sec-WebSocket-Extensions value [v, v + len) accepts
 * WSC_PMD_OFFER: "permessage-deflate", server_no_context_takeover, and
 * optionally client_no_context_takeover and server_max_window_bits.
 */
int wsc_pmd_accepted(const char *v, size_t len);

/* Bytes a client frame with this payload length takes. */
size_t wsc_frame_size(uint64_t len);
/*
 * Write a whole masked client frame (FIN set, RSV1 if rsv1: a compressed
 * message) into out; returns its length.
 */
size_t wsc_frame(uint8_t *out, int opcode, int rsv1, const void *payload, size_t len,
    uint32_t maskkey);

void wsc_decoder_init(struct wsc_decoder *, uint64_t max_message);
void wsc_decoder_free(struct wsc_decoder *);
/*
 * Consume bytes of buf (unmasking in place if a server masks) until one event
 * is ready. Returns the number of bytes consumed; call again with the rest
 * until it returns NEED having consumed everything.
 */
size_t wsc_decode(struct wsc_decoder *, uint8_t *buf, size_t len, struct wsc_ev *ev);

/*
 * permessage-deflate streams, reset for every message (neither side keeps
 * context); one per thread. The two output buffers are the pmd's own.
 */
struct wsc_pmd {
	z_stream	 zd, zi;
	uint8_t		 zd_ready, zi_ready;
	uint8_t		*dbuf, *ibuf;	/* the last compressed and inflated message */
	size_t		 dcap, icap;
};

void wsc_pmd_free(struct wsc_pmd *);
/*
 * Compress a whole message (RFC 7692 7.2.1: the final 00 00 ff ff taken off).
 * Returns the payload, valid until the next call, or NULL (out of memory).
 */
const uint8_t *wsc_pmd_deflate(struct wsc_pmd *, const uint8_t *in, size_t len, size_t *outlen);
/*
 * Inflate a whole compressed message into at most max bytes. Returns them,
 * valid until the next call, or NULL with *why set.
 */
const uint8_t *wsc_pmd_inflate(struct wsc_pmd *, const uint8_t *in, size_t len, uint64_t max,
    size_t *outlen, const char **why);

#endif
