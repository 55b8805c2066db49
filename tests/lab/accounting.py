"""The lab's accounting: what happened to every chat message, from the clients'
records (chatload.py) and the order Redis published in (redistap.py).

Per message sent: published (Redis carried it) and then delivered to each
client that was in the room, or answered `unavailable`, or in doubt (the
sender's connection ended before any answer: the sender knows it holds no
confirmation), or silently lost (the sender stayed connected and heard
nothing). Per client that should have received a message and did not, where
the miss lies: in a *gap* (published while the client was disconnected,
between two of its sessions), or a *hole* (published while its session was in
the room and received messages before and after it), at the *head* of a
session (after its own enter and before its first message) or at the *tail*
(after the last message its final session received, though it stayed until
the end). Holes, heads and tails are silent losses; gaps are what history
(issue 17) must give back: a client that re-enters with `since` recovers them.

HISTORY_RECOVERY is the one switch the scenarios' strict zero-loss assertions
hang on (issue 17: offsets, `since`, `recovered`). On, scenarios 1, 3 and 5
demand that reconnecting clients miss nothing and get nothing twice, and
scenario 2 that a host cut from Redis leaves no hole; off, they assert only
what holds without history (misses lie in the gaps of reconnecting clients)."""
import collections
import json
import os

# Issue 17 -- message history and gap-free recovery: the server sends "offset"
# on message events and answers an enter with "since" by a `recovered` event,
# so gaps must be 0 and nothing received twice. (Set False to run the lab
# against a roomd without history.)
HISTORY_RECOVERY = True


class Tap:
    """Redis's order: per room, the channel's events as the lab's subscriber saw them."""

    def __init__(self, path, prefix="roomd:"):
        self.rooms = collections.defaultdict(list)   # room -> [("m", id) | ("e"|"o", name, num)]
        self.msg = {}                                 # id -> (room, index in rooms[room], body)
        self.mpos = {}                                # id -> index among the room's messages
        self.mlist = collections.defaultdict(list)    # room -> [id] in order
        self.by_text = {}                             # (name, text) -> id
        self.t = {}                                   # id -> time the tap saw it
        head_, tail_ = prefix + "{", "}:c"        # a room's channel is P{ROOM}:c
        with open(path) as f:
            for line in f:
                t, channel, payload = json.loads(line)
                if not (channel.startswith(head_) and channel.endswith(tail_)):
                    continue
                room = channel[len(head_):-len(tail_)]
                head, _, body = payload.partition("\n")
                kind = head[:1]
                if kind == "m":
                    m = json.loads(body)
                    self.msg[m["id"]] = (room, len(self.rooms[room]), m)
                    self.mpos[m["id"]] = len(self.mlist[room])
                    self.mlist[room].append(m["id"])
                    self.by_text[(m["name"], m["message"])] = m["id"]
                    self.t[m["id"]] = t
                    self.rooms[room].append(("m", m["id"]))
                elif kind in ("e", "o"):
                    parts = head.split(" ")
                    self.rooms[room].append((kind, body, int(parts[1])))


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


class Accounting:
    """Everything the scenarios assert on, computed once after a run."""

    def __init__(self, records, tap, instances=None):
        self.tap = tap
        self.clients = [c for r in records for c in r["clients"]]
        self.instances = instances or {}          # roomd instance id -> host name
        self.sent_at = {}                          # (name, text) -> time sent
        for c in self.clients:
            for seq, t, _ in c["sends"]:
                self.sent_at[(c["name"], f"{c['name']}:{seq}")] = t
        self.problems = []                         # order and alignment violations, as text
        self.receivers = {}                        # name -> per-client receive figures
        for c in self.clients:
            self.receivers[c["name"]] = self.receive_side(c)
        self.senders = self.send_side()

    # ---- where a session was ----

    def host_of_id(self, mid):
        """The host whose worker accepted message mid ("INSTANCE.PID.SEQ")."""
        return self.instances.get(mid.split(".", 1)[0]) if mid else None

    def session_host(self, c, s):
        """The host a session was on: the one that accepted its own messages."""
        for e in s["events"]:
            if e[0] == "m" and e[3] == c["name"]:
                return self.host_of_id(e[2])
        return None

    # ---- receivers ----

    def own_enter_pos(self, c, s, first_m):
        """Index in the tap of the session's own enter, found back from its first message."""
        own = next((e for e in s["events"] if e[0] == "e" and e[2] == c["name"]), None)
        if own is None or first_m is None:
            return None
        room, idx, _ = self.tap.msg[first_m]
        ev = self.tap.rooms[room]
        for i in range(idx - 1, -1, -1):
            if ev[i][0] == "e" and ev[i][1] == c["name"] and ev[i][2] == own[3]:
                return i
        return None

    def receive_side(self, c):
        """Which of the room's messages c got, per session, and where it missed some."""
        room = c["room"]
        mlist = self.tap.mlist.get(room, [])
        got = collections.Counter()
        spans = []          # (session, first msg pos, last msg pos, own enter msg pos or None)
        for s in c["sessions"]:
            ids = [e[2] for e in s["events"] if e[0] == "m"]
            unknown = [i for i in ids if i not in self.tap.msg]
            if unknown:
                self.problems.append(f"{c['name']} got {len(unknown)} message(s) Redis never carried")
            pos = [self.tap.mpos[i] for i in ids if i in self.tap.msg]
            for a, b in zip(pos, pos[1:]):
                if b <= a:
                    self.problems.append(f"{c['name']} session {s['idx']}: message {mlist[b]} after "
                                         f"{mlist[a]}, out of Redis's order")
                    break
            got.update(ids)
            if not pos:
                spans.append((s, None, None, None))
                continue
            first_m = ids[0] if ids[0] in self.tap.msg else None
            epos = self.own_enter_pos(c, s, first_m)
            head_from = None
            if epos is not None:
                # The first message after the own enter, in the room's message order.
                ev = self.tap.rooms[room]
                head_from = next((self.tap.mpos[e[1]] for e in ev[epos:] if e[0] == "m"), None)
            spans.append((s, min(pos), max(pos), head_from))
        dup = sum(n - 1 for n in got.values() if n > 1)
        miss = {"gap": [], "hole": [], "head": [], "tail": []}
        live = [sp for sp in spans if sp[1] is not None]
        if live and mlist:
            start = live[0][3] if live[0][3] is not None else live[0][1]
            inside = set()
            for s, lo, hi, head_from in live:
                for p in range(lo, hi + 1):
                    inside.add(p)
                    if mlist[p] not in got:
                        miss["hole"].append(mlist[p])
                if head_from is not None:
                    for p in range(head_from, lo):
                        inside.add(p)
                        if mlist[p] not in got:
                            miss["head"].append(mlist[p])
            last = live[-1]
            final_open = c["sessions"][-1] is last[0] and last[0]["by_us"]
            for p in range(start, len(mlist)):
                if p in inside or mlist[p] in got:
                    continue
                if p > last[2] and final_open:
                    miss["tail"].append(mlist[p])
                else:
                    miss["gap"].append(mlist[p])
        received = sum(1 for i in got if i in self.tap.msg)
        return {"received": received, "dup": dup, "miss": miss, "spans": spans}

    # ---- senders ----

    def send_side(self):
        """Per message sent: published, unavailable, in doubt or lost; per session."""
        out = {"sent": 0, "published": 0, "unavailable": 0, "published_unavailable": 0,
               "in_doubt": 0, "lost": 0, "lost_examples": []}
        for c in self.clients:
            if c["watcher"]:
                continue        # says nothing: its errors answer its `who`
            by_session = collections.defaultdict(list)
            for seq, t, sidx in c["sends"]:
                by_session[sidx].append(f"{c['name']}:{seq}")
            for s in c["sessions"]:
                texts = by_session.get(s["idx"], [])
                errs = sum(1 for e in s["events"] if e[0] == "err" and e[2] == "unavailable"
                           and s["t_enter"] is not None and e[1] >= s["t_enter"])
                pub = [x for x in texts if (c["name"], x) in self.tap.by_text]
                unpub = [x for x in texts if (c["name"], x) not in self.tap.by_text]
                out["sent"] += len(texts)
                out["published"] += len(pub)
                answered = min(errs, len(unpub))
                out["unavailable"] += answered
                out["published_unavailable"] += max(0, errs - len(unpub))
                rest = len(unpub) - answered
                # A session that lived to the end (closed by the driver) heard about every message.
                if s["by_us"]:
                    out["lost"] += rest
                    out["lost_examples"] += unpub[answered:][:3]
                else:
                    out["in_doubt"] += rest
        return out

    # ---- figures ----

    def misses(self, kind, names=None):
        return sum(len(r["miss"][kind]) for n, r in self.receivers.items()
                   if names is None or n in names)

    def deliveries(self):
        return sum(r["received"] for r in self.receivers.values())

    def duplicates(self):
        return sum(r["dup"] for r in self.receivers.values())

    def reconnects(self):
        """{name: sessions - 1} for the talking clients and watchers alike."""
        return {c["name"]: len(c["sessions"]) - 1 for c in self.clients}

    def failed_attempts(self):
        return {c["name"]: sum(len(s["failed"]) for s in c["sessions"]) for c in self.clients}

    def close_codes(self, names=None):
        return collections.Counter(s["code"] for c in self.clients for s in c["sessions"][:-1]
                                   if names is None or c["name"] in names)

    def latencies(self, receivers, senders=None, t0=None, t1=None):
        """Seconds from send to receipt, for messages received by the named clients
        (and sent by the named senders), sent between t0 and t1."""
        out = []
        for c in self.clients:
            if c["name"] not in receivers:
                continue
            for s in c["sessions"]:
                for e in s["events"]:
                    if e[0] != "m" or (senders is not None and e[3] not in senders):
                        continue
                    ts = self.sent_at.get((e[3], e[4]))
                    if ts is None or (t0 is not None and ts < t0) or (t1 is not None and ts >= t1):
                        continue
                    out.append(e[1] - ts)
        return out

    def on_host(self, streams, host, at):
        """Clients whose session open at time `at` HAProxy had sent to host;
        streams is HAProxy.sessions() taken at that time."""
        names = set()
        for c in self.clients:
            for s in c["sessions"]:
                if s["t_open"] <= at and (s["t_close"] is None or s["t_close"] > at) and \
                        streams.get(tuple(s["local"])) == host:
                    names.add(c["name"])
        return names

    def sessions_after(self, name, t):
        """The sessions of client name that opened after t."""
        c = next(c for c in self.clients if c["name"] == name)
        return [s for s in c["sessions"] if s["t_open"] > t]

    def census_right_after(self, t_fault, slack=1.0):
        """The time (seconds after t_fault) from which every `who` answer of every
        watcher was right: each name once, num equal to the count, no name that
        was not in the room within slack seconds of it (the clients' own record
        of entering and leaving may lag the server's by a busy loop), none
        missing that was in it from slack seconds before to slack seconds after
        (the server takes a drained client out as it sends the close frame; the
        client records the close once the closing handshake is done). None if
        no answer came."""
        entered = collections.defaultdict(list)      # room -> [(name, t_enter, t_close)]
        for c in self.clients:
            for s in c["sessions"]:
                if s["t_enter"] is not None:
                    entered[c["room"]].append((c["name"], s["t_enter"], s["t_close"] or 1e18))
        last_wrong = None
        answers = 0
        for c in self.clients:
            if not c["watcher"]:
                continue
            for s in c["sessions"]:
                for e in s["events"]:
                    if e[0] != "who" or e[1] < t_fault:
                        continue
                    answers += 1
                    t, members, num = e[1], e[2], e[3]
                    could = {n for n, a, b in entered[c["room"]] if a <= t + slack and b >= t - slack}
                    must = {n for n, a, b in entered[c["room"]] if a <= t - slack and b >= t + slack}
                    ok = (len(members) == len(set(members)) == num and set(members) <= could
                          and must <= set(members))
                    if not ok and (last_wrong is None or t > last_wrong):
                        last_wrong = t
        if answers == 0:
            return None
        return 0.0 if last_wrong is None else last_wrong - t_fault

    def num_right_after(self, t_fault, slack=1.0):
        """Seconds after t_fault from which no message event carried a wrong num
        (0.0 if none did)."""
        wrong = self.nums_wrong_after(t_fault, slack)
        return max(w[0] for w in wrong) - t_fault if wrong else 0.0

    def nums_wrong_after(self, t, slack=1.0):
        """Message events received after t whose num differs from the number of
        clients in the room then (only where no one entered or left within slack)."""
        spans = collections.defaultdict(list)
        for c in self.clients:
            for s in c["sessions"]:
                if s["t_enter"] is not None:
                    spans[c["room"]].append((s["t_enter"], s["t_close"] or 1e18))
        wrong = []
        for c in self.clients:
            for s in c["sessions"]:
                for e in s["events"]:
                    if e[0] != "m" or e[1] < t:
                        continue
                    ts = self.sent_at.get((e[3], e[4]), e[1])
                    sp = spans[c["room"]]
                    if any(abs(a - ts) < slack or abs(b - ts) < slack for a, b in sp):
                        continue
                    count = sum(1 for a, b in sp if a <= ts < b)
                    if e[5] != count:
                        wrong.append((e[1], c["room"], e[5], count))
        return wrong

    def summary(self):
        """The figures of the report table."""
        rc = self.reconnects()
        per = [v for v in rc.values()]
        return {
            "clients": len(self.clients),
            "sent": self.senders["sent"],
            "published": self.senders["published"],
            "delivered": self.deliveries(),
            "unavailable": self.senders["unavailable"],
            "published_but_unavailable": self.senders["published_unavailable"],
            "in_doubt": self.senders["in_doubt"],
            "lost_by_sender": self.senders["lost"],
            "missed_gap": self.misses("gap"),
            "missed_hole": self.misses("hole"),
            "missed_head": self.misses("head"),
            "missed_tail": self.misses("tail"),
            "duplicates": self.duplicates(),
            "order_problems": len(self.problems),
            "reconnects_max": max(per) if per else 0,
            "reconnects_total": sum(per),
            "failed_attempts": sum(self.failed_attempts().values()),
        }


def report(name, figures):
    """Print a scenario's figures (pytest -s shows them) and add them to
    $ROOMD_LAB_REPORT (JSON lines) when set: the table of issue 19's report."""
    line = json.dumps({"scenario": name, **figures}, sort_keys=True)
    print(f"\nlab {name}: {line}")
    path = os.environ.get("ROOMD_LAB_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
