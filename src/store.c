/*
 * store.c: the rooms' state in Redis.
 *
 * Keys under the configured prefix P, each room's behind its hash tag {ROOM}
 * and each worker's behind {w:WID}:
 *   P{ROOM}:m     hash member-id -> name (num = HLEN, who = HVALS)
 *   P{ROOM}:n     hash name -> how many members have it (no key when none)
 *   P{ROOM}:p     hash e -> epoch, o -> offset of the room's last message
 *   P{ROOM}:h     stream of the last history_size messages, ID "OFFSET-0"
 *   P{ROOM}:c     the room's channel
 *   P{w:WID}      hash member-id -> ROOM "\n" NAME: what worker WID holds
 *   P{w:WID}:a    expires after presence_ttl unless the worker refreshes it
 *   P{w:WID}:g    tombstone (a day): WID's members were removed and announced out
 *   P workers     set of every WID that may hold members
 *   P{u:SUB}      hash session-id -> WID: the sessions of a user with a token
 *                 (registered under "\1" session-id -> SUB in P{w:WID} too)
 * The position and the stream expire history_ttl after the room's last
 * message; a room whose position is gone (expired, evicted, Redis restarted
 * empty) starts a new epoch at offset 0, so a client can tell its old
 * offsets mean nothing any more.
 *
 * Channel payloads start with a one-line header the subscribers read without
 * parsing JSON: "m OFFSET EPOCH\n<json>" a chat message (the final event),
 * "e NUM MID OFFSET EPOCH\nNAME" enter (with the room's position then),
 * "o NUM MID\nNAME" out, "q NUM MID\nNAME" a quiet out (a member removed
 * after a crash or a lost link while another member of that name is in the
 * room: the person did not leave), "n NUM\n" a count refresh, "t\n<bytes>" /
 * "b\n<bytes>" broadcast-route text / binary.
 *
 * Each script touches one room's keys, declared in KEYS, so it runs on the
 * room's Cluster slot, and publishes with PUB (SPUBLISH on a Cluster: the
 * channel shares the room's slot). A member's registry entry is a separate
 * command, sent first, so a crash leaves nothing the cleanup cannot find.
 *
 * The dead are buried from here, one command or script per key, so it works
 * on a Cluster too: the worker that takes a dead worker's place removes its
 * predecessor's members, and every worker's janitor removes those of
 * workers whose liveness expired (a host that died). Each removal announces
 * the member only if it was still there, so janitors that meet do no harm;
 * the worker leaves the workers set last, so a burial cut short is done
 * again by the next janitor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "jbuf.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

/*
 * Shared Lua: the room's position, started (a new epoch at offset 0) if it
 * is gone, or if it was made on another master than this one (GEN, from the
 * bus's prelude: behind Sentinel, the master roomd writes to): a failover
 * may have lost the old master's last writes, and their offsets must not be
 * handed out again in the same epoch.
 */
#define LUA_POSITION \
	"local function position(p, h, ttl, cand)\n" \
	"  local pos = redis.call('HMGET', p, 'e', 'o', 'g')\n" \
	"  if not pos[1] or (GEN and pos[3] ~= GEN) then\n" \
	"    pos = {cand, '0'}\n" \
	"    redis.call('DEL', h)\n" \
	"    redis.call('HSET', p, 'e', cand, 'o', 0)\n" \
	"    if GEN then redis.call('HSET', p, 'g', GEN) end\n" \
	"    redis.call('PEXPIRE', p, ttl)\n" \
	"  end\n" \
	"  return pos\n" \
	"end\n"

/* Shared Lua: count a name in or out of a room; how many members have it now. */
#define LUA_NAMED \
	"local function named(n, name, by)\n" \
	"  local c = redis.call('HINCRBY', n, name, by)\n" \
	"  if c <= 0 then redis.call('HDEL', n, name) end\n" \
	"  return c\n" \
	"end\n"

/* KEYS: m n p h; ARGV: channel mid name ttl epoch-candidate */
static const char lua_enter[] = LUA_POSITION LUA_NAMED
	"if redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) == 1 then named(KEYS[2], ARGV[3], 1) end\n"
	"local num = redis.call('HLEN', KEYS[1])\n"
	"local pos = position(KEYS[3], KEYS[4], ARGV[4], ARGV[5])\n"
	"redis.call(PUB, ARGV[1], 'e ' .. num .. ' ' .. ARGV[2] .. ' ' .. pos[2] .. ' ' .. pos[1] .. '\\n' .. ARGV[3])\n"
	"return num\n";

/*
 * KEYS: m n; ARGV: channel mid name how. how "0": the member left. "1": it
 * left while the link was down: announced late, even if Redis no longer
 * knew it. "2": roomd lost it (its worker died, its host stalled):
 * announced only if Redis still had it, else the answer is -1. Late or
 * lost, it leaves quietly if a member of its name is in the room now (it
 * came back meanwhile: nobody left).
 */
static const char lua_out[] = LUA_NAMED
	"local kind, left = 'o', 0\n"
	"if redis.call('HDEL', KEYS[1], ARGV[2]) == 1 then\n"
	"  left = named(KEYS[2], ARGV[3], -1)\n"
	"elseif ARGV[4] == '1' then\n"
	"  left = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')\n"
	"elseif ARGV[4] == '2' then\n"
	"  return -1\n"
	"else\n"
	"  return redis.call('HLEN', KEYS[1])\n"
	"end\n"
	"local num = redis.call('HLEN', KEYS[1])\n"
	"if num == 0 then redis.call('DEL', KEYS[2]) end\n"
	"if ARGV[4] ~= '0' and left > 0 then kind = 'q' end\n"
	"redis.call(PUB, ARGV[1], kind .. ' ' .. num .. ' ' .. ARGV[2] .. '\\n' .. ARGV[3])\n"
	"return num\n";

/*
 * KEYS: m n p h; ARGV: channel mid name ttl epoch-candidate announce. A member
 * Redis no longer knows is announced again only if its rooms were told it
 * left (announce "1": the worker found its tombstone): after Redis merely
 * lost its data nobody heard an out, and an enter would show people
 * "joining" who never left.
 */
static const char lua_resync[] = LUA_POSITION LUA_NAMED
	"local added = redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
	"if added == 1 then named(KEYS[2], ARGV[3], 1) end\n"
	"local num = redis.call('HLEN', KEYS[1])\n"
	"if added == 1 and ARGV[6] == '1' then\n"
	"  local pos = position(KEYS[3], KEYS[4], ARGV[4], ARGV[5])\n"
	"  redis.call(PUB, ARGV[1], 'e ' .. num .. ' ' .. ARGV[2] .. ' ' .. pos[2] .. ' ' .. pos[1] .. '\\n' .. ARGV[3])\n"
	"else\n"
	"  redis.call(PUB, ARGV[1], 'n ' .. num .. '\\n')\n"
	"end\n"
	"return num\n";

/*
 * KEYS: p h m; ARGV: channel head history-size ttl epoch-candidate full. The
 * message's offset is the one it has in the stream, and the order of
 * offsets is the order of publication: every member receives that order.
 * The answer is the offset, or with full "1" {offset, epoch, num}.
 */
static const char lua_say[] = LUA_POSITION
	"local pos = position(KEYS[1], KEYS[2], ARGV[4], ARGV[5])\n"
	"local off = redis.call('HINCRBY', KEYS[1], 'o', 1)\n"
	"local num = redis.call('HLEN', KEYS[3])\n"
	"local js = ARGV[2] .. ',\"num\":' .. num .. ',\"offset\":' .. off .. '}'\n"
	"if ARGV[3] ~= '0' then\n"
	"  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], off .. '-0', 'd', js)\n"
	"  redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
	"end\n"
	"redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
	"redis.call(PUB, ARGV[1], 'm ' .. off .. ' ' .. pos[1] .. '\\n' .. js)\n"
	"if ARGV[6] == '1' then return {off, pos[1], num} end\n"
	"return off\n";

/* KEYS: p h; ARGV: mode ("a" after / "b" before) offset limit upto (0: now). */
static const char lua_read[] =
	"local pos = redis.call('HMGET', KEYS[1], 'e', 'o')\n"
	"local out = {pos[1] or '', tonumber(pos[2] or '0')}\n"
	"local r\n"
	"if ARGV[1] == 'a' then\n"
	"  local to = '+'\n"
	"  if ARGV[4] ~= '0' then to = ARGV[4] .. '-0' end\n"
	"  r = redis.call('XRANGE', KEYS[2], '(' .. ARGV[2] .. '-0', to, 'COUNT', ARGV[3])\n"
	"else\n"
	"  local from = '+'\n"
	"  if ARGV[2] ~= '0' then from = '(' .. ARGV[2] .. '-0' end\n"
	"  r = redis.call('XREVRANGE', KEYS[2], from, '-', 'COUNT', ARGV[3])\n"
	"end\n"
	"for _, e in ipairs(r) do\n"
	"  out[#out + 1] = e[1]\n"
	"  out[#out + 1] = e[2][2]\n"
	"end\n"
	"return out\n";

/* KEYS: m; ARGV: max. The total, then at most max names (a large room is not listed whole). */
static const char lua_who[] =
	"local n = redis.call('HLEN', KEYS[1])\n"
	"local max = tonumber(ARGV[1])\n"
	"if n <= max then\n"
	"  local v = redis.call('HVALS', KEYS[1])\n"
	"  table.insert(v, 1, n)\n"
	"  return v\n"
	"end\n"
	"local out, cur = {n}, '0'\n"
	"repeat\n"
	"  local r = redis.call('HSCAN', KEYS[1], cur, 'COUNT', max)\n"
	"  cur = r[1]\n"
	"  for i = 2, #r[2], 2 do\n"
	"    if #out <= max then out[#out + 1] = r[2][i] end\n"
	"  end\n"
	"until cur == '0' or #out > max\n"
	"return out\n";

/* KEYS: u; ARGV: sid wid max. The user's sessions with this one, or -2 if that would pass max. */
static const char lua_user_open[] =
	"local max = tonumber(ARGV[3])\n"
	"if max > 0 and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and\n"
	"    redis.call('HLEN', KEYS[1]) >= max then\n"
	"  return -2\n"
	"end\n"
	"redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
	"return redis.call('HLEN', KEYS[1])\n";

#define KEY_MAX		1200	/* prefix (<= 64) + {room (<= 1024)} + suffix */

static struct {
	const struct config	*cfg;
	const struct store_handlers *user;	/* the room layer's */
	struct bus_handlers	 h;		/* ours, in front of theirs */
	char			 wid[96];
	size_t			 widlen;
	char			 reg[256];	/* P{w:WID} */
	size_t			 reglen;
	char			 prefix[128];
	size_t			 plen;
	int			 s_enter, s_out, s_resync, s_say, s_read, s_who, s_user;
	struct store_user	*users;		/* this worker's sessions counted for their users */
	int			 announce;	/* our tombstone was there: resyncs announce */
	struct event		*presence;
	int			 janitor_turn;
	char			 ttl[24];	/* history_ttl in ms, as text */
	size_t			 ttllen;
	char			 hsize[24];	/* history_size as text */
	size_t			 hsizelen;
	uint64_t		 rng[2];
	char			 dead[96];	/* the predecessor to bury once up */
	struct burial		*burials;	/* under way */
} S;

/* Build P{ROOM}SUFFIX into buf; its length, or 0 if it does not fit. */
static size_t
room_key(char *buf, size_t len, const char *room, size_t rl, const char *suffix)
{
	size_t sl = strlen(suffix), n = S.plen + 1 + rl + 1 + sl;

	if (n >= len)
		return 0;
	memcpy(buf, S.prefix, S.plen);
	buf[S.plen] = '{';
	memcpy(buf + S.plen + 1, room, rl);
	buf[S.plen + 1 + rl] = '}';
	memcpy(buf + S.plen + 2 + rl, suffix, sl);
	buf[n] = '\0';
	return n;
}

size_t
store_channel(char *buf, size_t len, const char *room, size_t rl)
{
	return room_key(buf, len, room, rl, ":c");
}

const char *
store_room_of(const char *ch, size_t chlen, size_t *rl)
{
	if (chlen < S.plen + 4 || memcmp(ch, S.prefix, S.plen) != 0 || ch[S.plen] != '{' ||
	    memcmp(ch + chlen - 3, "}:c", 3) != 0)
		return NULL;
	*rl = chlen - S.plen - 4;
	return ch + S.plen + 1;
}

/* 16 hex digits for a new epoch (xorshift128+, seeded from getrandom). */
static void
epoch_candidate(char out[17])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t s1 = S.rng[0], s0 = S.rng[1], v;

	S.rng[0] = s0;
	s1 ^= s1 << 23;
	S.rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
	v = S.rng[1] + s0;
	for (int i = 0; i < 16; i++, v >>= 4)
		out[i] = hex[v & 15];
	out[16] = '\0';
}

static void users_resync(void);

/* The reply to a command no one waits on: only its errors matter. */
static void
ignore_reply(redisReply *r, void *arg)
{
	(void)bus_reply_error(r);
}

/* ---- presence ---- */

static void
refresh_alive(void)
{
	char k[300], ttl[24];
	const char *argv[5] = { "SET", k, "1", "PX", ttl };
	size_t argl[5] = { 3, 0, 1, 2, 0 };

	argl[1] = (size_t)snprintf(k, sizeof(k), "%s:a", S.reg);
	argl[4] = jbuf_itoa(ttl, S.cfg->presence_ttl);
	(void)bus_command(5, argv, argl, ignore_reply, NULL);
}

/* Our tombstone says whether our rooms were told we left (0 if the link died first). */
static int
read_tombstone(redisReply *reply)
{
	if (bus_reply_error(reply))
		return 0;	/* the link died: up runs again when it is back */
	S.announce = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
	users_resync();
	return 1;
}

/* After the links came up: then the room layer comes up. */
static void
tombstone_reply(redisReply *r, void *arg)
{
	if (read_tombstone(r) && S.user->bus.up != NULL)
		S.user->bus.up();
}

/* After Redis forgot us with the links up: the room layer registers its members again. */
static void
forgotten_reply(redisReply *r, void *arg)
{
	if (read_tombstone(r) && S.user->forgotten != NULL)
		S.user->forgotten();
}

/*
 * Still in the workers set? If the SADD added us, another host's janitor
 * removed this worker (it stalled past presence_ttl: a VM pause, SIGSTOP)
 * or Redis lost its data, while the links stayed up. Its members are gone
 * from their rooms: the tombstone says whether the rooms heard them leave,
 * and every one is registered again.
 */
static void
enrolled_reply(redisReply *r, void *arg)
{
	redisReply *reply = r;
	char k[300];
	const char *ex[2] = { "EXISTS", k };
	size_t exl[2] = { 6, 0 };

	if (bus_reply_error(reply) || reply->type != REDIS_REPLY_INTEGER || reply->integer != 1)
		return;
	log_warn("this worker's members were removed from Redis (a stall past presence_ttl, or Redis "
	    "lost its data); registering them again");
	metrics_add(MET_REENROLLED, 1);
	exl[1] = (size_t)snprintf(k, sizeof(k), "%s:g", S.reg);
	(void)bus_command(2, ex, exl, forgotten_reply, NULL);
}

static void janitor(void);
static void bury(const char *wid, int tell);

static void
presence_cb(evutil_socket_t fd, short what, void *arg)
{
	char k[300];
	const char *sadd[3] = { "SADD", k, S.wid };
	size_t saddl[3] = { 4, 0, S.widlen };

	if (!bus_ready())
		return;
	/* Alive first: a janitor that runs between the two finds us alive, or its SREM shows. */
	refresh_alive();
	saddl[1] = (size_t)snprintf(k, sizeof(k), "%sworkers", S.prefix);
	(void)bus_command(3, sadd, saddl, enrolled_reply, NULL);
	/* The janitor runs every other refresh: often enough to remove a dead host within presence_ttl. */
	if (++S.janitor_turn % 2 == 0)
		janitor();
}

static void
on_up(void)
{
	char k[300];
	const char *sadd[3] = { "SADD", k, S.wid };
	size_t saddl[3] = { 4, 0, S.widlen };
	const char *ex[2] = { "EXISTS", k };
	size_t exl[2] = { 6, 0 };

	saddl[1] = (size_t)snprintf(k, sizeof(k), "%sworkers", S.prefix);
	(void)bus_command(3, sadd, saddl, ignore_reply, NULL);
	refresh_alive();
	exl[1] = (size_t)snprintf(k, sizeof(k), "%s:g", S.reg);
	if (bus_command(2, ex, exl, tombstone_reply, NULL) == -1 && S.user->bus.up != NULL)
		S.user->bus.up();
	if (S.dead[0] != '\0') {
		bury(S.dead, 1);
		S.dead[0] = '\0';
	}
}

/* ---- members ---- */

struct count_req {
	store_count_fn	 fn;
	void		*arg;
};

static void
count_reply(redisReply *r, void *arg)
{
	struct count_req *cr = arg;
	redisReply *reply = r;
	long num = -1;

	if (!bus_reply_error(reply) && reply->type == REDIS_REPLY_INTEGER)
		num = (long)reply->integer;
	if (cr->fn != NULL)
		cr->fn(cr->arg, num);
	free(cr);
}

/* Run a member script: KEYS m n[, p, h], ARGV channel mid name [extra...]. */
static int
member_script(int script, const char *room, size_t rl, const char *mid, const char *name, size_t nl,
    int with_position, const char *extra, store_count_fn fn, void *arg)
{
	char m[KEY_MAX], n[KEY_MAX], p[KEY_MAX], h[KEY_MAX], ch[KEY_MAX], cand[17];
	const char *argv[11];
	size_t argl[11];
	struct count_req *cr = NULL;
	int nkeys = with_position ? 4 : 2, argc = 0;

	if ((argl[argc] = room_key(m, sizeof(m), room, rl, ":m")) == 0)
		return -1;
	argv[argc++] = m;
	argl[argc] = room_key(n, sizeof(n), room, rl, ":n");
	argv[argc++] = n;
	if (with_position) {
		argl[argc] = room_key(p, sizeof(p), room, rl, ":p");
		argv[argc++] = p;
		argl[argc] = room_key(h, sizeof(h), room, rl, ":h");
		argv[argc++] = h;
	}
	argl[argc] = store_channel(ch, sizeof(ch), room, rl);
	argv[argc++] = ch;
	argv[argc] = mid;
	argl[argc++] = strlen(mid);
	argv[argc] = name;
	argl[argc++] = nl;
	if (with_position) {
		argv[argc] = S.ttl;
		argl[argc++] = S.ttllen;
		epoch_candidate(cand);
		argv[argc] = cand;
		argl[argc++] = 16;
	}
	if (extra != NULL) {
		argv[argc] = extra;
		argl[argc++] = strlen(extra);
	}
	if (fn != NULL) {
		if ((cr = malloc(sizeof(*cr))) == NULL)
			return -1;
		cr->fn = fn;
		cr->arg = arg;
	}
	if (bus_eval(script, nkeys, argc, argv, argl, cr != NULL ? count_reply : ignore_reply, cr) == -1) {
		free(cr);
		return -1;
	}
	return 0;
}

/* The worker's registry: member mid is in room (so a crash can be cleaned up), or no longer. */
static int
registry(int add, const char *room, size_t rl, const char *mid, const char *name, size_t nl)
{
	char v[KEY_MAX + 1100];
	const char *argv[4] = { add ? "HSET" : "HDEL", S.reg, mid, v };
	size_t argl[4] = { 4, S.reglen, strlen(mid), 0 };

	if (rl + 1 + nl > sizeof(v))
		return -1;
	memcpy(v, room, rl);
	v[rl] = '\n';
	memcpy(v + rl + 1, name, nl);
	argl[3] = rl + 1 + nl;
	return bus_command(add ? 4 : 3, argv, argl, ignore_reply, NULL);
}

int
store_enter(const char *room, size_t rl, const char *mid, const char *name, size_t nl)
{
	if (registry(1, room, rl, mid, name, nl) == -1)
		return -1;
	return member_script(S.s_enter, room, rl, mid, name, nl, 1, NULL, NULL, NULL);
}

int
store_out(const char *room, size_t rl, const char *mid, const char *name, size_t nl,
    int announce_always, store_count_fn fn, void *arg)
{
	if (member_script(S.s_out, room, rl, mid, name, nl, 0, announce_always ? "1" : "0", fn, arg) == -1)
		return -1;
	(void)registry(0, room, rl, mid, name, nl);
	return 0;
}

int
store_resync(const char *room, size_t rl, const char *mid, const char *name, size_t nl)
{
	if (registry(1, room, rl, mid, name, nl) == -1)
		return -1;
	return member_script(S.s_resync, room, rl, mid, name, nl, 1, S.announce ? "1" : "0", NULL, NULL);
}

/* ---- messages ---- */

struct say_req {
	store_said_fn	 fn;
	void		*arg;
};

static void
say_reply(redisReply *r, void *arg)
{
	struct say_req *sr = arg;
	redisReply *reply = r, *e;
	char epoch[STORE_EPOCH_MAX + 1] = "";
	int ok = !bus_reply_error(reply) && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
	    reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[1]->type == REDIS_REPLY_STRING &&
	    reply->element[2]->type == REDIS_REPLY_INTEGER;

	if (ok) {
		e = reply->element[1];
		snprintf(epoch, sizeof(epoch), "%.*s", e->len < STORE_EPOCH_MAX ? (int)e->len : STORE_EPOCH_MAX,
		    e->str);
	}
	sr->fn(sr->arg, ok, ok ? (uint64_t)reply->element[0]->integer : 0, epoch,
	    ok ? (long)reply->element[2]->integer : -1);
	free(sr);
}

/* The answer to a member's message: only whether Redis took it matters (no allocation). */
static void
said_reply(redisReply *r, void *arg)
{
	redisReply *reply = r;

	S.user->said(arg, !bus_reply_error(reply) && reply->type == REDIS_REPLY_INTEGER);
}

/* Run the say script; full asks for {offset, epoch, num}. */
static int
say(const char *room, size_t rl, const char *head, size_t hl, int full, bus_reply_fn *fn, void *arg)
{
	char p[KEY_MAX], h[KEY_MAX], m[KEY_MAX], ch[KEY_MAX], cand[17];
	const char *argv[9] = { p, h, m, ch, head, S.hsize, S.ttl, cand, full ? "1" : "0" };
	size_t argl[9], kl;

	/* The four keys differ in their last letter only. */
	if ((kl = room_key(p, sizeof(p), room, rl, ":p")) == 0)
		return -1;
	memcpy(h, p, kl + 1);
	memcpy(m, p, kl + 1);
	memcpy(ch, p, kl + 1);
	h[kl - 1] = 'h';
	m[kl - 1] = 'm';
	ch[kl - 1] = 'c';
	argl[0] = argl[1] = argl[2] = argl[3] = kl;
	argl[4] = hl;
	argl[5] = S.hsizelen;
	argl[6] = S.ttllen;
	epoch_candidate(cand);
	argl[7] = 16;
	argl[8] = 1;
	if (bus_eval(S.s_say, 3, 9, argv, argl, fn, arg) == -1)
		return -1;
	metrics_add(MET_PUBLISHED, 1);
	return 0;
}

int
store_say(const char *room, size_t rl, const char *head, size_t hl, void *arg)
{
	return say(room, rl, head, hl, 0, said_reply, arg);
}

int
store_say_full(const char *room, size_t rl, const char *head, size_t hl, store_said_fn fn, void *arg)
{
	struct say_req *sr = malloc(sizeof(*sr));

	if (sr == NULL)
		return -1;
	sr->fn = fn;
	sr->arg = arg;
	if (say(room, rl, head, hl, 1, say_reply, sr) == -1) {
		free(sr);
		return -1;
	}
	return 0;
}

int
store_relay(const char *room, size_t rl, const char *payload, size_t pl, store_count_fn fn, void *arg)
{
	char ch[KEY_MAX];
	size_t chl;
	struct count_req *cr = NULL;

	if ((chl = store_channel(ch, sizeof(ch), room, rl)) == 0)
		return -1;
	if (fn != NULL) {
		if ((cr = malloc(sizeof(*cr))) == NULL)
			return -1;
		cr->fn = fn;
		cr->arg = arg;
	}
	if (bus_publish(ch, chl, payload, pl, cr != NULL ? count_reply : ignore_reply, cr) == -1) {
		free(cr);
		return -1;
	}
	metrics_add(MET_PUBLISHED, 1);
	return 0;
}

/* ---- history ---- */

struct range_req {
	store_range_fn	 fn;
	void		*arg;
};

static void
range_reply(redisReply *r, void *arg)
{
	struct range_req *rr = arg;
	redisReply *reply = r;
	struct store_range out;
	uint64_t *off = NULL;
	const char **json = NULL;
	size_t *len = NULL, n = 0;
	char epoch[STORE_EPOCH_MAX + 1] = "";

	memset(&out, 0, sizeof(out));
	out.epoch = epoch;
	if (!bus_reply_error(reply) && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
	    reply->elements % 2 == 0 && reply->element[0]->type == REDIS_REPLY_STRING &&
	    reply->element[1]->type == REDIS_REPLY_INTEGER) {
		n = (reply->elements - 2) / 2;
		off = calloc(n + 1, sizeof(*off));
		json = calloc(n + 1, sizeof(*json));
		len = calloc(n + 1, sizeof(*len));
		out.ok = off != NULL && json != NULL && len != NULL;
		for (size_t i = 0; out.ok && i < n; i++) {
			const redisReply *id = reply->element[2 + 2 * i], *js = reply->element[3 + 2 * i];
			char *end;

			if (id->type != REDIS_REPLY_STRING || js->type != REDIS_REPLY_STRING) {
				out.ok = 0;
				break;
			}
			off[i] = strtoull(id->str, &end, 10);
			json[i] = js->str;
			len[i] = (size_t)js->len;
		}
		if (out.ok) {
			const redisReply *e = reply->element[0];

			snprintf(epoch, sizeof(epoch), "%.*s",
			    e->len < STORE_EPOCH_MAX ? (int)e->len : STORE_EPOCH_MAX, e->str);
			out.offset = (uint64_t)reply->element[1]->integer;
			out.n = n;
			out.off = off;
			out.json = json;
			out.len = len;
		}
	}
	rr->fn(rr->arg, &out);
	free(off);
	free(json);
	free(len);
	free(rr);
}

static int
read_range(const char *mode, const char *room, size_t rl, uint64_t at, uint64_t upto, unsigned limit,
    store_range_fn fn, void *arg)
{
	char p[KEY_MAX], h[KEY_MAX], a[24], u[24], l[24];
	const char *argv[6] = { p, h, mode, a, l, u };
	size_t argl[6];
	struct range_req *rr;

	if ((argl[0] = room_key(p, sizeof(p), room, rl, ":p")) == 0 ||
	    (argl[1] = room_key(h, sizeof(h), room, rl, ":h")) == 0)
		return -1;
	argl[2] = 1;
	argl[3] = jbuf_itoa(a, (long long)(at & INT64_MAX));
	argl[4] = jbuf_itoa(l, limit);
	argl[5] = jbuf_itoa(u, (long long)(upto & INT64_MAX));
	if ((rr = malloc(sizeof(*rr))) == NULL)
		return -1;
	rr->fn = fn;
	rr->arg = arg;
	if (bus_eval(S.s_read, 2, 6, argv, argl, range_reply, rr) == -1) {
		free(rr);
		return -1;
	}
	return 0;
}

int
store_read_after(const char *room, size_t rl, uint64_t after, uint64_t upto, unsigned limit,
    store_range_fn fn, void *arg)
{
	return read_range("a", room, rl, after, upto, limit, fn, arg);
}

/* XREVRANGE gives the newest first: turn the messages around before the caller sees them. */
struct rev_req {
	store_range_fn	 fn;
	void		*arg;
};

static void
rev_reply(void *arg, const struct store_range *in)
{
	struct rev_req *rv = arg;
	struct store_range out = *in;
	uint64_t *off = NULL;
	const char **json = NULL;
	size_t *len = NULL;

	if (in->ok && in->n > 1) {
		off = malloc(in->n * sizeof(*off));
		json = malloc(in->n * sizeof(*json));
		len = malloc(in->n * sizeof(*len));
		if (off == NULL || json == NULL || len == NULL)
			out.ok = 0;
		for (size_t i = 0; out.ok && i < in->n; i++) {
			off[i] = in->off[in->n - 1 - i];
			json[i] = in->json[in->n - 1 - i];
			len[i] = in->len[in->n - 1 - i];
		}
		if (out.ok) {
			out.off = off;
			out.json = json;
			out.len = len;
		}
	}
	rv->fn(rv->arg, &out);
	free(off);
	free(json);
	free(len);
	free(rv);
}

int
store_read_before(const char *room, size_t rl, uint64_t before, unsigned limit, store_range_fn fn, void *arg)
{
	struct rev_req *rv = malloc(sizeof(*rv));

	if (rv == NULL)
		return -1;
	rv->fn = fn;
	rv->arg = arg;
	if (read_range("b", room, rl, before, 0, limit, rev_reply, rv) == -1) {
		free(rv);
		return -1;
	}
	return 0;
}

/* ---- who ---- */

struct who_req {
	store_who_fn	 fn;
	void		*arg;
};

static void
who_reply(redisReply *r, void *arg)
{
	struct who_req *wr = arg;
	redisReply *reply = r;
	const char **names = NULL;
	size_t *lens = NULL, n = 0;

	if (bus_reply_error(reply) || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER) {
		wr->fn(wr->arg, NULL, NULL, 0, -1);
		free(wr);
		return;
	}
	n = reply->elements - 1;
	names = calloc(n + 1, sizeof(*names));
	lens = calloc(n + 1, sizeof(*lens));
	if (names == NULL || lens == NULL) {
		wr->fn(wr->arg, NULL, NULL, 0, -1);
	} else {
		for (size_t i = 0; i < n; i++) {
			const redisReply *e = reply->element[1 + i];

			names[i] = e->type == REDIS_REPLY_STRING ? e->str : "";
			lens[i] = e->type == REDIS_REPLY_STRING ? (size_t)e->len : 0;
		}
		wr->fn(wr->arg, names, lens, n, (long)reply->element[0]->integer);
	}
	free(names);
	free(lens);
	free(wr);
}

int
store_who(const char *room, size_t rl, unsigned max, store_who_fn fn, void *arg)
{
	char m[KEY_MAX], mx[24];
	const char *argv[2] = { m, mx };
	size_t argl[2];
	struct who_req *wr;

	if ((argl[0] = room_key(m, sizeof(m), room, rl, ":m")) == 0)
		return -1;
	argl[1] = jbuf_itoa(mx, max);
	if ((wr = malloc(sizeof(*wr))) == NULL)
		return -1;
	wr->fn = fn;
	wr->arg = arg;
	if (bus_eval(S.s_who, 1, 2, argv, argl, who_reply, wr) == -1) {
		free(wr);
		return -1;
	}
	return 0;
}

/* ---- users ---- */

struct store_user {
	struct store_user *next, *prev;
	char		 sid[64];
	size_t		 sublen;
	char		 sub[];
};

static size_t
user_key(char *buf, size_t len, const char *sub, size_t sl)
{
	int n;

	if (sl > 1024)
		return 0;
	n = snprintf(buf, len, "%s{u:%.*s}", S.prefix, (int)sl, sub);
	return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

/* The worker's registry entry of a user session (so a crash can be cleaned up), or its removal. */
static int
user_registry(int add, const struct store_user *u)
{
	char f[80];
	const char *argv[4] = { add ? "HSET" : "HDEL", S.reg, f, u->sub };
	size_t argl[4] = { 4, S.reglen, 0, u->sublen };

	argl[2] = (size_t)snprintf(f, sizeof(f), "\x01%s", u->sid);
	return bus_command(add ? 4 : 3, argv, argl, ignore_reply, NULL);
}

/* Count u for its user: checked against max (0: none), or not (a resync after the link came back). */
static int
user_register(struct store_user *u, int max, store_count_fn fn, void *arg)
{
	char k[KEY_MAX], mx[24];
	const char *argv[4] = { k, u->sid, S.wid, mx };
	size_t argl[4] = { 0, strlen(u->sid), S.widlen, 0 };
	struct count_req *cr;

	if ((argl[0] = user_key(k, sizeof(k), u->sub, u->sublen)) == 0)
		return -1;
	argl[3] = jbuf_itoa(mx, max);
	if (user_registry(1, u) == -1 || (cr = malloc(sizeof(*cr))) == NULL)
		return -1;
	cr->fn = fn;
	cr->arg = arg;
	if (bus_eval(S.s_user, 1, 4, argv, argl, count_reply, cr) == -1) {
		free(cr);
		return -1;
	}
	return 0;
}

struct store_user *
store_user_open(const char *sub, size_t sl, int max, store_count_fn fn, void *arg)
{
	static uint64_t seq;
	struct store_user *u;

	if (!bus_ready() || sl > 1024 || (u = calloc(1, sizeof(*u) + sl + 1)) == NULL)
		return NULL;
	snprintf(u->sid, sizeof(u->sid), "%s.u%llu", S.wid, (unsigned long long)++seq);
	memcpy(u->sub, sub, sl);
	u->sublen = sl;
	if (user_register(u, max, fn, arg) == -1) {
		free(u);
		return NULL;
	}
	u->next = S.users;
	if (S.users != NULL)
		S.users->prev = u;
	S.users = u;
	return u;
}

void
store_user_close(struct store_user *u)
{
	char k[KEY_MAX];
	const char *argv[3] = { "HDEL", k, u->sid };
	size_t argl[3] = { 4, 0, strlen(u->sid) };

	if ((argl[1] = user_key(k, sizeof(k), u->sub, u->sublen)) != 0 &&
	    bus_command(3, argv, argl, ignore_reply, NULL) == 0)
		(void)user_registry(0, u);
	/* If the link is down the entry stays until the link is back: the resync then drops it. */
	if (u->prev != NULL)
		u->prev->next = u->next;
	else
		S.users = u->next;
	if (u->next != NULL)
		u->next->prev = u->prev;
	free(u);
}

int
store_user_online(const char *name, size_t nl, store_count_fn fn, void *arg)
{
	char k[KEY_MAX];
	const char *argv[2] = { "HLEN", k };
	size_t argl[2] = { 4, 0 };
	struct count_req *cr;

	if ((argl[1] = user_key(k, sizeof(k), name, nl)) == 0 || (cr = malloc(sizeof(*cr))) == NULL)
		return -1;
	cr->fn = fn;
	cr->arg = arg;
	if (bus_command(2, argv, argl, count_reply, cr) == -1) {
		free(cr);
		return -1;
	}
	return 0;
}

/* Back after a lost link: Redis may have lost the users (a restart) or kept stale ones. */
static void
users_resync(void)
{
	for (struct store_user *u = S.users; u != NULL; u = u->next)
		(void)user_register(u, 0, NULL, NULL);
}

/* ---- start, stop ---- */

int
store_start(struct event_base *base, const struct config *cfg, const char *wid, const struct store_handlers *h)
{
	struct timeval tv;
	int every;

	memset(&S, 0, sizeof(S));
	S.cfg = cfg;
	S.user = h;
	S.h = h->bus;
	S.h.up = on_up;
	snprintf(S.wid, sizeof(S.wid), "%s", wid);
	S.widlen = strlen(S.wid);
	snprintf(S.prefix, sizeof(S.prefix), "%s", cfg->redis_prefix);
	S.plen = strlen(S.prefix);
	S.reglen = (size_t)snprintf(S.reg, sizeof(S.reg), "%s{w:%s}", S.prefix, S.wid);
	S.ttllen = jbuf_itoa(S.ttl, cfg->history_ttl);
	S.hsizelen = jbuf_itoa(S.hsize, cfg->history_size);
	if (getrandom(S.rng, sizeof(S.rng), 0) != sizeof(S.rng))
		return -1;
	S.rng[0] |= 1;
	if ((S.s_enter = bus_script(lua_enter, sizeof(lua_enter) - 1)) == -1 ||
	    (S.s_out = bus_script(lua_out, sizeof(lua_out) - 1)) == -1 ||
	    (S.s_resync = bus_script(lua_resync, sizeof(lua_resync) - 1)) == -1 ||
	    (S.s_say = bus_script(lua_say, sizeof(lua_say) - 1)) == -1 ||
	    (S.s_read = bus_script(lua_read, sizeof(lua_read) - 1)) == -1 ||
	    (S.s_who = bus_script(lua_who, sizeof(lua_who) - 1)) == -1 ||
	    (S.s_user = bus_script(lua_user_open, sizeof(lua_user_open) - 1)) == -1)
		return -1;
	if ((S.presence = event_new(base, -1, EV_PERSIST, presence_cb, NULL)) == NULL)
		return -1;
	every = cfg->presence_ttl / 3;
	tv.tv_sec = every / 1000;
	tv.tv_usec = (every % 1000) * 1000;
	if (event_add(S.presence, &tv) == -1)
		return -1;
	return bus_start(base, cfg, wid, &S.h);
}

void
store_stop(void)
{
	bus_stop();
	if (S.presence != NULL)
		event_free(S.presence);
	S.presence = NULL;
}

void
store_farewell(void)
{
	char k[300], k2[300];
	const char *del[3] = { "DEL", S.reg, k };
	size_t dell[3] = { 3, S.reglen, 0 };
	const char *srem[3] = { "SREM", k2, S.wid };
	size_t sreml[3] = { 4, 0, S.widlen };

	dell[2] = (size_t)snprintf(k, sizeof(k), "%s:a", S.reg);
	sreml[1] = (size_t)snprintf(k2, sizeof(k2), "%sworkers", S.prefix);
	(void)bus_command(3, srem, sreml, ignore_reply, NULL);
	(void)bus_command(3, del, dell, ignore_reply, NULL);
}

void
store_bury(const char *wid)
{
	snprintf(S.dead, sizeof(S.dead), "%s", wid);
}

/* ---- the dead ---- */

/* A dead worker's members leaving their rooms, and then the worker itself. */
struct burial {
	struct burial	*next;
	int		 pending;	/* answers due */
	int		 removed;	/* members that were still in their rooms */
	int		 failed;	/* a step failed: the next janitor does it again */
	int		 tell;		/* log how many (a predecessor's) */
	char		 wid[96];
};

static void
buried(struct burial *b)
{
	char reg[300], k[300], k2[300];
	const char *del[3] = { "DEL", reg, k };
	size_t dell[3] = { 3, 0, 0 };
	const char *srem[3] = { "SREM", k2, b->wid };
	size_t sreml[3] = { 4, 0, strlen(b->wid) };
	const char *set[5] = { "SET", k, "1", "EX", "86400" };
	size_t setl[5] = { 3, 0, 1, 2, 5 };
	const char *pid = strrchr(b->wid, '.');

	if (!b->failed) {
		/* Two commands for the registry and its liveness: they share the worker's slot. */
		dell[1] = (size_t)snprintf(reg, sizeof(reg), "%s{w:%s}", S.prefix, b->wid);
		dell[2] = (size_t)snprintf(k, sizeof(k), "%s:a", reg);
		(void)bus_command(3, del, dell, ignore_reply, NULL);
		/* The tombstone: its rooms were told it left (it came back after a stall?). */
		setl[1] = (size_t)snprintf(k, sizeof(k), "%s:g", reg);
		(void)bus_command(5, set, setl, ignore_reply, NULL);
		/* Last: until then a janitor finds it and buries it again. */
		sreml[1] = (size_t)snprintf(k2, sizeof(k2), "%sworkers", S.prefix);
		(void)bus_command(3, srem, sreml, ignore_reply, NULL);
	}
	if (b->tell && b->removed > 0)
		log_notice("removed %d member(s) of worker pid %s from their rooms", b->removed,
		    pid != NULL ? pid + 1 : b->wid);
	else if (b->removed > 0)
		log_notice("removed %d member(s) of worker %s, whose presence expired, from their rooms",
		    b->removed, b->wid);
	for (struct burial **pp = &S.burials; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	free(b);
}

static void
step_done(struct burial *b, redisReply *r, int is_member)
{
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		b->failed = 1;
	else if (is_member && r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
		b->removed++;
	if (--b->pending == 0)
		buried(b);
}

static void
lost_member_reply(redisReply *r, void *arg)
{
	step_done(arg, r, 1);
}

static void
lost_user_reply(redisReply *r, void *arg)
{
	step_done(arg, r, 0);
}

/* A member of a dead worker leaves its room (announced if it was still there). */
static int
lost_member(struct burial *b, const char *room, size_t rl, const char *mid, size_t ml, const char *name, size_t nl)
{
	char m[KEY_MAX], n[KEY_MAX], ch[KEY_MAX];
	const char *argv[6] = { m, n, ch, mid, name, "2" };
	size_t argl[6] = { 0, 0, 0, ml, nl, 1 };

	if ((argl[0] = room_key(m, sizeof(m), room, rl, ":m")) == 0 ||
	    (argl[1] = room_key(n, sizeof(n), room, rl, ":n")) == 0 ||
	    (argl[2] = store_channel(ch, sizeof(ch), room, rl)) == 0)
		return -1;
	return bus_eval(S.s_out, 2, 6, argv, argl, lost_member_reply, b);
}

/* A session of a dead worker no longer counts for its user. */
static int
lost_user(struct burial *b, const char *sid, size_t sl, const char *sub, size_t subl)
{
	char k[KEY_MAX];
	const char *argv[3] = { "HDEL", k, sid };
	size_t argl[3] = { 4, 0, sl };
	int n = snprintf(k, sizeof(k), "%s{u:%.*s}", S.prefix, (int)subl, sub);

	if (n < 0 || (size_t)n >= sizeof(k))
		return -1;
	argl[1] = (size_t)n;
	return bus_command(3, argv, argl, lost_user_reply, b);
}

static void
registry_reply(redisReply *r, void *arg)
{
	struct burial *b = arg;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
		b->failed = 1;
		buried(b);
		return;
	}
	b->pending = 1;		/* held until every step is sent */
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		const char *nl;
		int rc;

		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len == 0)
			continue;
		if (k->str[0] == '\1')
			rc = lost_user(b, k->str + 1, (size_t)k->len - 1, v->str, (size_t)v->len);
		else if ((nl = memchr(v->str, '\n', (size_t)v->len)) != NULL)
			rc = lost_member(b, v->str, (size_t)(nl - v->str), k->str, (size_t)k->len, nl + 1,
			    (size_t)(v->len - (nl + 1 - v->str)));
		else
			continue;
		if (rc == -1)
			b->failed = 1;
		else
			b->pending++;
	}
	step_done(b, r, 0);
}

/* Remove a dead worker's members from their rooms (once at a time per worker). */
static void
bury(const char *wid, int tell)
{
	char reg[300];
	const char *argv[2] = { "HGETALL", reg };
	size_t argl[2] = { 7, 0 };
	struct burial *b;
	int n;

	for (b = S.burials; b != NULL; b = b->next)
		if (strcmp(b->wid, wid) == 0)
			return;
	n = snprintf(reg, sizeof(reg), "%s{w:%s}", S.prefix, wid);
	if (n < 0 || (size_t)n >= sizeof(reg) || (b = calloc(1, sizeof(*b))) == NULL)
		return;
	argl[1] = (size_t)n;
	snprintf(b->wid, sizeof(b->wid), "%s", wid);
	b->tell = tell;
	if (bus_command(2, argv, argl, registry_reply, b) == -1) {
		free(b);
		return;
	}
	b->next = S.burials;
	S.burials = b;
}

struct janitor_req {
	char	wid[96];
};

static void
liveness_reply(redisReply *r, void *arg)
{
	struct janitor_req *j = arg;

	if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 0)
		bury(j->wid, 0);
	free(j);
}

static void
workers_reply(redisReply *r, void *arg)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *w = r->element[i];
		char k[300];
		const char *argv[2] = { "EXISTS", k };
		size_t argl[2] = { 6, 0 };
		struct janitor_req *j;
		int n;

		if (w->type != REDIS_REPLY_STRING || (size_t)w->len >= sizeof(j->wid) ||
		    ((size_t)w->len == S.widlen && memcmp(w->str, S.wid, S.widlen) == 0))
			continue;
		n = snprintf(k, sizeof(k), "%s{w:%s}:a", S.prefix, w->str);
		if (n < 0 || (size_t)n >= sizeof(k) || (j = malloc(sizeof(*j))) == NULL)
			continue;
		argl[1] = (size_t)n;
		memcpy(j->wid, w->str, (size_t)w->len + 1);
		if (bus_command(2, argv, argl, liveness_reply, j) == -1)
			free(j);
	}
}

/* Every worker whose liveness expired is buried. */
static void
janitor(void)
{
	char k[300];
	const char *argv[2] = { "SMEMBERS", k };
	size_t argl[2] = { 8, 0 };

	argl[1] = (size_t)snprintf(k, sizeof(k), "%sworkers", S.prefix);
	(void)bus_command(2, argv, argl, workers_reply, NULL);
}

/*
 * ---- the HTTP API (roomd-api(7)) ----
 *
 *   P{w:WID}:i    WID's liveness record (JSON) for /api/info; it expires
 *                 with the liveness key, presence_ttl after its last refresh
 *   P{ctl}:k      the channel of control messages every worker listens to
 *                 (disconnects, and the answers to them); no room's channel
 *                 ends in ":k"
 * Every command here names one key, so each can be routed to the slot that
 * holds it in Redis Cluster: the rooms listing is a SCAN, then one HLEN per
 * room; /api/info one SMEMBERS, then one GET per worker.
 */

#define STORE_MAX_WORKERS	4096	/* workers /api/info reads at most */

/* P{ctl}:k into buf; its length. */
static size_t
control_channel(char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s{ctl}:k", S.prefix);

	return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

int
store_info_put(const char *json, size_t len)
{
	char k[300], ttl[24];
	const char *argv[5] = { "SET", k, json, "PX", ttl };
	size_t argl[5] = { 3, 0, len, 2, 0 };

	argl[1] = (size_t)snprintf(k, sizeof(k), "%s:i", S.reg);
	argl[4] = jbuf_itoa(ttl, S.cfg->presence_ttl);
	return bus_command(5, argv, argl, ignore_reply, NULL);
}

/* Several replies gathered into one answer: each part is one command's reply. */
struct gather {
	int		 issuing;	/* commands are still being sent */
	int		 ok;
	size_t		 pending, n;
	char		**str;		/* each part's string (NULL: none) */
	size_t		*len;
	long		*num;		/* each part's integer */
	uint64_t	 next;		/* rooms: the cursor of the next page */
	char		**keys;		/* rooms: the keys the parts are about */
	size_t		*klen;
	void		(*done)(struct gather *);
	void		*fn, *arg;
};

struct gather_part {
	struct gather	*g;
	size_t		 i;
};

static void
gather_free(struct gather *g)
{
	for (size_t i = 0; i < g->n; i++) {
		free(g->str[i]);
		if (g->keys != NULL)
			free(g->keys[i]);
	}
	free(g->str);
	free(g->len);
	free(g->num);
	free(g->keys);
	free(g->klen);
	free(g);
}

/* n parts; NULL when out of memory. */
static struct gather *
gather_new(size_t n, int with_keys)
{
	struct gather *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->ok = 1;
	g->n = n;
	g->str = calloc(n + 1, sizeof(*g->str));
	g->len = calloc(n + 1, sizeof(*g->len));
	g->num = calloc(n + 1, sizeof(*g->num));
	if (with_keys) {
		g->keys = calloc(n + 1, sizeof(*g->keys));
		g->klen = calloc(n + 1, sizeof(*g->klen));
	}
	if (g->str == NULL || g->len == NULL || g->num == NULL ||
	    (with_keys && (g->keys == NULL || g->klen == NULL))) {
		g->n = 0;
		gather_free(g);
		return NULL;
	}
	return g;
}

/* One part answered (or a command could not be sent): answer when it was the last. */
static void
gather_settle(struct gather *g)
{
	if (--g->pending > 0 || g->issuing)
		return;
	g->done(g);
	gather_free(g);
}

static void
gather_reply(redisReply *reply, void *arg)
{
	struct gather_part *p = arg;
	struct gather *g = p->g;

	if (bus_reply_error(reply))
		g->ok = 0;
	else if (reply->type == REDIS_REPLY_INTEGER)
		g->num[p->i] = (long)reply->integer;
	else if (reply->type == REDIS_REPLY_STRING) {
		if ((g->str[p->i] = malloc((size_t)reply->len + 1)) == NULL)
			g->ok = 0;
		else {
			memcpy(g->str[p->i], reply->str, (size_t)reply->len);
			g->str[p->i][reply->len] = '\0';
			g->len[p->i] = (size_t)reply->len;
		}
	} else if (reply->type != REDIS_REPLY_NIL)
		g->ok = 0;
	free(p);
	gather_settle(g);
}

/* Send "CMD key" for every part's key; then answer once all are in. */
static void
gather_run(struct gather *g, const char *cmd)
{
	g->issuing = 1;
	g->pending = 1;		/* ours, while sending */
	for (size_t i = 0; i < g->n; i++) {
		const char *argv[2] = { cmd, g->keys[i] };
		size_t argl[2] = { strlen(cmd), g->klen[i] };
		struct gather_part *p = malloc(sizeof(*p));

		if (p == NULL) {
			g->ok = 0;
			break;
		}
		p->g = g;
		p->i = i;
		g->pending++;
		if (bus_command(2, argv, argl, gather_reply, p) == -1) {
			free(p);
			g->pending--;
			g->ok = 0;
			break;
		}
	}
	g->issuing = 0;
	gather_settle(g);
}

/* The worker ids SMEMBERS gave become the parts: P{w:WID}:i each. */
static void
infos_done(struct gather *g)
{
	((store_infos_fn)g->fn)(g->arg, g->ok, (const char *const *)g->str, g->len, g->n);
}

static void
info_workers_reply(redisReply *reply, void *arg)
{
	struct gather *in = arg, *g;
	size_t n;

	if (bus_reply_error(reply) || reply->type != REDIS_REPLY_ARRAY) {
		((store_infos_fn)in->fn)(in->arg, 0, NULL, NULL, 0);
		free(in);
		return;
	}
	n = reply->elements < STORE_MAX_WORKERS ? reply->elements : STORE_MAX_WORKERS;
	if ((g = gather_new(n, 1)) == NULL) {
		((store_infos_fn)in->fn)(in->arg, 0, NULL, NULL, 0);
		free(in);
		return;
	}
	g->done = infos_done;
	g->fn = in->fn;
	g->arg = in->arg;
	free(in);
	for (size_t i = 0; i < n; i++) {
		const redisReply *e = reply->element[i];
		char k[300];
		int kl;

		if (e->type != REDIS_REPLY_STRING || e->len > 200)
			kl = snprintf(k, sizeof(k), "%s{w:}:i", S.prefix);	/* no such worker: a nil */
		else
			kl = snprintf(k, sizeof(k), "%s{w:%.*s}:i", S.prefix, (int)e->len, e->str);
		if (kl < 0 || (size_t)kl >= sizeof(k) || (g->keys[i] = strdup(k)) == NULL) {
			g->ok = 0;
			kl = 0;
		}
		g->klen[i] = (size_t)kl;
	}
	if (!g->ok) {
		g->issuing = 0;
		g->pending = 1;
		gather_settle(g);
		return;
	}
	gather_run(g, "GET");
}

int
store_infos(store_infos_fn fn, void *arg)
{
	char k[300];
	const char *argv[2] = { "SMEMBERS", k };
	size_t argl[2] = { 8, 0 };
	struct gather *in = calloc(1, sizeof(*in));

	if (in == NULL)
		return -1;
	in->fn = (void *)fn;
	in->arg = arg;
	argl[1] = (size_t)snprintf(k, sizeof(k), "%sworkers", S.prefix);
	if (bus_command(2, argv, argl, info_workers_reply, in) == -1) {
		free(in);
		return -1;
	}
	return 0;
}

/* A page of rooms: the keys SCAN gave, each with the HLEN it answered. */
static void
rooms_done(struct gather *g)
{
	const char **rooms = calloc(g->n + 1, sizeof(*rooms));
	size_t *lens = calloc(g->n + 1, sizeof(*lens));
	long *nums = calloc(g->n + 1, sizeof(*nums));
	size_t k = 0;

	if (rooms == NULL || lens == NULL || nums == NULL)
		g->ok = 0;
	for (size_t i = 0; g->ok && i < g->n; i++) {
		/* P{ROOM}:m; a room emptied since the SCAN is left out. */
		if (g->num[i] <= 0 || g->klen[i] < S.plen + 4)
			continue;
		rooms[k] = g->keys[i] + S.plen + 1;
		lens[k] = g->klen[i] - S.plen - 4;
		nums[k++] = g->num[i];
	}
	((store_rooms_fn)g->fn)(g->arg, g->ok, g->next, rooms, lens, nums, g->ok ? k : 0);
	free(rooms);
	free(lens);
	free(nums);
}

/*
 * A rooms cursor is the master's index in its top bits and that master's
 * SCAN cursor below them (SCAN's cursors stay far below 2^48): a Cluster's
 * pages go through its masters one after the other.
 */
#define SCAN_NODE_SHIFT	48
#define SCAN_CURSOR_MASK	((UINT64_C(1) << SCAN_NODE_SHIFT) - 1)

static void
scan_reply(redisReply *reply, void *arg)
{
	struct gather *in = arg, *g;
	const redisReply *keys;
	uint64_t node = in->next, cur = 0;
	char *end = NULL;

	if (!bus_reply_error(reply) && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
	    reply->element[0]->type == REDIS_REPLY_STRING)
		cur = strtoull(reply->element[0]->str, &end, 10);
	if (end == NULL || *end != '\0' || cur > SCAN_CURSOR_MASK || reply->element[1]->type != REDIS_REPLY_ARRAY ||
	    (g = gather_new((keys = reply->element[1])->elements, 1)) == NULL) {
		((store_rooms_fn)in->fn)(in->arg, 0, 0, NULL, NULL, NULL, 0);
		free(in);
		return;
	}
	g->done = rooms_done;
	g->fn = in->fn;
	g->arg = in->arg;
	/* This master's next page; after its last, the next master's first; after the last master's, 0. */
	if (cur != 0)
		g->next = node << SCAN_NODE_SHIFT | cur;
	else
		g->next = node + 1 < (uint64_t)bus_nodes() ? (node + 1) << SCAN_NODE_SHIFT : 0;
	free(in);
	for (size_t i = 0; i < g->n; i++) {
		const redisReply *e = keys->element[i];

		if (e->type != REDIS_REPLY_STRING || (g->keys[i] = malloc((size_t)e->len + 1)) == NULL) {
			g->ok = 0;
			continue;
		}
		memcpy(g->keys[i], e->str, (size_t)e->len);
		g->keys[i][e->len] = '\0';
		g->klen[i] = (size_t)e->len;
	}
	if (!g->ok) {
		g->pending = 1;
		gather_settle(g);
		return;
	}
	gather_run(g, "HLEN");
}

int
store_rooms(uint64_t cursor, unsigned count, store_rooms_fn fn, void *arg)
{
	char pat[300], cur[24], cnt[24];
	const char *argv[6] = { "SCAN", cur, "MATCH", pat, "COUNT", cnt };
	size_t argl[6] = { 4, 0, 5, 0, 5, 0 };
	struct gather *in;
	uint64_t node = cursor >> SCAN_NODE_SHIFT;
	size_t o = 0;

	if (node >= (uint64_t)bus_nodes()) {
		/* A cursor of a Cluster that had more masters then: nothing is left to page through. */
		fn(arg, 1, 0, NULL, NULL, NULL, 0);
		return 0;
	}
	/* P{*}:m, with the prefix's own glob characters escaped. */
	for (size_t i = 0; i < S.plen && o + 2 < sizeof(pat); i++) {
		if (strchr("*?[]\\", S.prefix[i]) != NULL)
			pat[o++] = '\\';
		pat[o++] = S.prefix[i];
	}
	if (o + 6 >= sizeof(pat) || (in = calloc(1, sizeof(*in))) == NULL)
		return -1;
	memcpy(pat + o, "{*}:m", 5);
	argl[3] = o + 5;
	argl[1] = (size_t)snprintf(cur, sizeof(cur), "%llu", (unsigned long long)(cursor & SCAN_CURSOR_MASK));
	argl[5] = jbuf_itoa(cnt, count);
	in->fn = (void *)fn;
	in->arg = arg;
	in->next = node;	/* the master asked */
	if (bus_command_at((int)node, 6, argv, argl, scan_reply, in) == -1) {
		free(in);
		return -1;
	}
	return 0;
}

struct position_req {
	store_position_fn fn;
	void		*arg;
};

static void
position_reply(redisReply *reply, void *arg)
{
	struct position_req *pr = arg;
	char epoch[STORE_EPOCH_MAX + 1] = "";
	uint64_t off = 0;
	int ok = !bus_reply_error(reply) && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2;

	if (ok && reply->element[0]->type == REDIS_REPLY_STRING && reply->element[1]->type == REDIS_REPLY_STRING) {
		const redisReply *e = reply->element[0];

		snprintf(epoch, sizeof(epoch), "%.*s", e->len < STORE_EPOCH_MAX ? (int)e->len : STORE_EPOCH_MAX, e->str);
		off = strtoull(reply->element[1]->str, NULL, 10);
	}
	pr->fn(pr->arg, ok, off, epoch);
	free(pr);
}

int
store_position(const char *room, size_t rl, store_position_fn fn, void *arg)
{
	char p[KEY_MAX];
	const char *argv[4] = { "HMGET", p, "e", "o" };
	size_t argl[4] = { 5, 0, 1, 1 };
	struct position_req *pr;

	if ((argl[1] = room_key(p, sizeof(p), room, rl, ":p")) == 0 || (pr = malloc(sizeof(*pr))) == NULL)
		return -1;
	pr->fn = fn;
	pr->arg = arg;
	if (bus_command(4, argv, argl, position_reply, pr) == -1) {
		free(pr);
		return -1;
	}
	return 0;
}

int
store_control_subscribe(void)
{
	char ch[300];
	size_t cl = control_channel(ch, sizeof(ch));

	return cl == 0 ? -1 : bus_subscribe(ch, cl);
}

int
store_control_lost(void)
{
	char ch[300];
	size_t cl = control_channel(ch, sizeof(ch));

	return cl > 0 && bus_channel_lost(ch, cl);
}

int
store_control_publish(const char *payload, size_t pl, store_count_fn fn, void *arg)
{
	char ch[300];
	size_t cl;
	struct count_req *cr;

	if ((cl = control_channel(ch, sizeof(ch))) == 0 || (cr = malloc(sizeof(*cr))) == NULL)
		return -1;
	cr->fn = fn;
	cr->arg = arg;
	if (bus_publish(ch, cl, payload, pl, count_reply, cr) == -1) {
		free(cr);
		return -1;
	}
	return 0;
}

int
store_is_control(const char *ch, size_t chlen)
{
	char c[300];
	size_t cl = control_channel(c, sizeof(c));

	return cl != 0 && cl == chlen && memcmp(c, ch, cl) == 0;
}
