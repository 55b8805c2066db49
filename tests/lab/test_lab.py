"""The deployment lab's scenarios (issue 19): three roomd hosts behind HAProxy
sharing one Redis, each in its own network namespace, ~300 chat clients in 10
rooms through HAProxy, and the faults real deployments meet. Every scenario
accounts for every message (accounting.py): delivered to every client that was
in the room, answered `unavailable`, or -- only where the client was
disconnected -- missed in a gap that history (issue 17) must fill; never
silently lost, never out of Redis's order. Each has its own deadline and takes
its lab down whatever happens.

Scenario 6 runs the hosts against a Sentinel set and fails its master over
twice (on command, then by SIGKILL); 7 runs two hosts in PID namespaces of
their own, so that their workers' pids coincide, and kills one of them."""
import collections
import signal
import time

import accounting
from accounting import HISTORY_RECOVERY, Accounting, Tap, report
from crowd import Crowd, RedisTap
from netlab import CHECK_FALL, CHECK_INTER_MS

PRESENCE_TTL = 3.0      # the hosts' presence_ttl (netlab.Host)
CLIENTS = 300
ROOMS = 10


class Traffic:
    """A tap on Redis and crowds of chat clients, ready and talking."""

    def __init__(self, lab, crowds=(("c1", CLIENTS, "c", 4.0),), max_seconds=150):
        """crowds: (client namespace, clients, name prefix, seconds between messages);
        the first crowd has the watchers."""
        self.lab = lab
        self.tap = RedisTap(lab)
        self.crowds = []
        first = 0
        for i, (net, n, prefix, interval) in enumerate(crowds):
            self.crowds.append(Crowd(lab, net, clients=n, rooms=ROOMS, first=first, prefix=prefix,
                                     watchers=(i == 0), interval=interval,
                                     max_seconds=max_seconds))
            first += n
        for c in self.crowds:
            c.wait_ready(60)
        self.t_start = max(c.sending(True) for c in self.crowds)

    def join(self, net, clients, first, prefix, talk=True):
        """More clients, now (their record joins the accounting)."""
        c = Crowd(self.lab, net, clients=clients, rooms=ROOMS, first=first, prefix=prefix,
                  watchers=False, max_seconds=120)
        c.wait_ready(30)
        if talk:
            c.sending(True)
        self.crowds.append(c)
        return c

    def finish(self, settle=2.0):
        """Everyone stops talking, what is in flight lands, then everyone leaves."""
        for c in self.crowds:
            c.sending(False)
        time.sleep(settle)
        for c in self.crowds:
            c.finish(0)
        path = self.tap.stop()
        instances = {i: h.name for h in self.lab.hosts for i in h.instance()}
        return Accounting([c.record for c in self.crowds], Tap(path), instances)


def sleep_until(t):
    time.sleep(max(0.0, t - time.time()))


def assert_nothing_silently_lost(acc, movers):
    """What holds with or without history: senders heard about every message
    (delivered, `unavailable`, or their connection ended first), every member
    received Redis's order with no hole while connected, and only clients that
    were disconnected (movers) missed anything -- in the gap between sessions.
    With HISTORY_RECOVERY the gaps must be empty too: recovered with `since`."""
    s = acc.summary()
    assert acc.problems == [], acc.problems[:10]
    assert s["lost_by_sender"] == 0, (s, acc.senders["lost_examples"])
    assert (s["missed_hole"], s["missed_head"], s["missed_tail"]) == (0, 0, 0), s
    gap_clients = {n for n, r in acc.receivers.items() if r["miss"]["gap"]}
    assert gap_clients <= movers, f"missed while not disconnected: {sorted(gap_clients - movers)}"
    assert s["duplicates"] == 0, s
    if HISTORY_RECOVERY:
        assert s["missed_gap"] == 0, s
        unrecovered = [(c["name"], x["idx"]) for c in acc.clients for x in c["sessions"]
                       if x["since"] is not None and
                       not any(e[0] == "rec" and e[2] is True for e in x["events"])]
        assert not unrecovered, f"re-entered with since but not recovered: {unrecovered[:5]}"
        assert all(c["sessions"][i]["since"] is not None for c in acc.clients
                   for i in range(1, len(c["sessions"]))), \
            "a client came back without since"
    return s


# ---- 1. host crash ----

def test_host_crash(lab):
    """SIGKILL every process of host B while 300 clients chat in 10 rooms
    across A, B and C. HAProxy marks B down; B's clients reconnect through it
    to A or C, once each; `who` and `num` on A and C are right again within
    twice presence_ttl, as documented (the janitor removes B's members); A's and C's clients never
    notice; nothing is silently lost, and (with history) nothing is lost."""
    lab = lab(deadline=150)
    traffic = Traffic(lab)
    sleep_until(traffic.t_start + 8)
    streams = lab.haproxy.sessions()
    t_kill = time.time()
    lab.kill_host("B")
    lab.host("B").crashed()
    lab.haproxy.wait_status("hosts", {"B": "DOWN"}, 10)
    t_down = time.time() - t_kill
    sleep_until(t_kill + PRESENCE_TTL + 9)
    acc = traffic.finish()

    on_b = acc.on_host(streams, "B", t_kill)
    everyone = {c["name"] for c in acc.clients}
    assert len(on_b) >= CLIENTS // 6, f"only {len(on_b)} clients were on B"
    for name in on_b:
        after = acc.sessions_after(name, t_kill)
        assert len(after) == 1 and after[0]["t_enter"] is not None, (name, after)
    rc = acc.reconnects()
    assert {n for n, k in rc.items() if k} == on_b, "a client not on B reconnected"
    assert set(acc.close_codes()) == {1006}, acc.close_codes()
    census = acc.census_right_after(t_kill)
    num = acc.num_right_after(t_kill)
    s = assert_nothing_silently_lost(acc, on_b)
    report("1 host crash", {**s, "on_B": len(on_b), "haproxy_down_s": round(t_down, 2),
                            "who_right_s": round(census, 2), "num_right_s": round(num, 2),
                            "reconnects_per_moved_client": 1, "history": HISTORY_RECOVERY})
    # roomd.conf(5): the workers that remain remove a vanished host's members
    # "within about twice presence_ttl" (its presence expires presence_ttl after
    # its last refresh, and each worker's janitor runs every 2/3 presence_ttl).
    assert census is not None and census <= 2 * PRESENCE_TTL, \
        f"who still wrong {census:.2f}s after the crash (presence_ttl {PRESENCE_TTL}s)"
    assert num <= 2 * PRESENCE_TTL, f"num still wrong {num:.2f}s after the crash"
    assert everyone - on_b, "nobody stayed"


# ---- 2. partition from Redis ----

def test_partition_from_redis(lab):
    """Host B keeps its clients but loses its link to Redis (its port on the
    back network goes down). B answers `unavailable` to what its clients say,
    its /readyz goes 503, HAProxy marks it down and sends new clients to A and
    C; A's and C's janitors remove B's members. When the link returns B is
    ready again, its members are back in `who` and `num`, and its clients
    never lost their connections. Nothing its clients sent is silently lost.
    What B's members miss while B cannot hear Redis is a hole today (pub/sub is
    at-most-once): it must lie inside the partition and only on B; with
    HISTORY_RECOVERY the server repairs it and there is none."""
    lab = lab(deadline=150)
    b = lab.host("B")
    traffic = Traffic(lab)
    sleep_until(traffic.t_start + 8)
    streams = lab.haproxy.sessions()
    t_cut = time.time()
    lab.link("h2", "back", up=False)
    t_unready = wait_time(lambda: b.http("/readyz")[0] == 503, 10, "B's /readyz 503")
    lab.haproxy.wait_status("hosts", {"B": "DOWN"}, 10)
    t_down = time.time() - t_cut
    # Newcomers now: HAProxy must send every one of them to A or C.
    traffic.join("c1", 30, CLIENTS, "n")
    late_streams = lab.haproxy.sessions()
    sleep_until(t_cut + 8)
    t_heal = time.time()
    lab.link("h2", "back", up=True)
    t_ready = wait_time(lambda: b.http("/readyz")[0] == 200, 15, "B's /readyz 200 again")
    lab.haproxy.wait_status("hosts", {"B": "UP"}, 10)
    sleep_until(t_heal + 8)
    acc = traffic.finish()

    on_b = acc.on_host(streams, "B", t_cut)
    assert len(on_b) >= CLIENTS // 6, f"only {len(on_b)} clients were on B"
    assert not any(v == "B" for k, v in late_streams.items() if k[0] == lab.client_ip("c1")
                   and k not in streams), "HAProxy sent a newcomer to B while it was down"
    assert sum(acc.reconnects().values()) == 0, "a client lost its connection"
    b_unavailable = sum(1 for c in acc.clients if c["name"] in on_b for s in c["sessions"]
                        for e in s["events"] if e[0] == "err" and e[2] == "unavailable")
    assert b_unavailable > 0, "B never said unavailable"
    census = acc.census_right_after(t_heal)
    s = acc.summary()
    assert acc.problems == [], acc.problems[:10]
    assert s["lost_by_sender"] == 0, (s, acc.senders["lost_examples"])
    assert (s["missed_gap"], s["missed_head"], s["missed_tail"]) == (0, 0, 0), s
    holes = {n: r["miss"]["hole"] for n, r in acc.receivers.items() if r["miss"]["hole"]}
    assert set(holes) <= on_b, f"clients not on B missed messages: {sorted(set(holes) - on_b)[:5]}"
    for ids in holes.values():
        for mid in ids:
            assert t_cut - 1 <= acc.tap.t[mid] <= t_heal + t_ready + 1, \
                f"{mid} missed outside the partition"
    report("2 partition from redis", {
        **s, "on_B": len(on_b), "B_unavailable": b_unavailable, "readyz_503_s": round(t_unready, 2),
        "haproxy_down_s": round(t_down, 2), "ready_again_s": round(t_ready, 2),
        "who_right_after_heal_s": None if census is None else round(census, 2),
        "B_members_with_holes": len(holes), "history": HISTORY_RECOVERY})
    # `unavailable` says "not delivered; send it again": a message so answered
    # must never reach Redis later. Today it does when the link returns, because
    # the dropped Redis socket is closed gracefully and the kernel still sends
    # the PUBLISH it held (a resend then makes a duplicate).
    assert s["published_but_unavailable"] == 0, \
        f"{s['published_but_unavailable']} message(s) answered unavailable were published later"
    if HISTORY_RECOVERY:
        assert s["missed_hole"] == 0, f"{s['missed_hole']} messages silently missed on B"
    assert census is not None and census <= 2 * PRESENCE_TTL, \
        f"who still wrong {census}s after the link came back"


def wait_time(pred, timeout, what):
    """Seconds until pred() held (polled every 50 ms); fails after timeout."""
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.time() - t0


def assert_moved_once(acc, movers, t_from, t_to, codes=(1001,)):
    """Each mover's session open at t_from ended (with one of codes) and the
    client came back exactly once before t_to; nobody else reconnected then."""
    for c in acc.clients:
        opened = [s for s in c["sessions"] if t_from < s["t_open"] <= t_to]
        if c["name"] in movers:
            assert len(opened) == 1 and opened[0]["t_enter"] is not None, \
                f"{c['name']} came back {len(opened)} times: {[s['t_open'] for s in opened]}"
            ended = [s for s in c["sessions"] if s["t_open"] <= t_from < (s["t_close"] or 1e18)]
            assert ended and ended[0]["code"] in codes, (c["name"], ended and ended[0]["code"])
        else:
            assert not opened, f"{c['name']} reconnected though its host was not touched"


# ---- 3. rolling restart ----

def test_rolling_restart(lab):
    """SIGTERM each host in turn (drain_time 4s, longer than HAProxy's check
    interval x fall = 2s), start it again, wait until HAProxy has it back, go on
    to the next. Every client of the stopping host is closed with 1001 and
    comes back through HAProxy exactly once per restart of its host; nobody
    else reconnects; nothing is silently lost (with history: nothing lost).
    Then HAProxy itself is reloaded under the same traffic: no client notices,
    and newcomers get in through the new HAProxy worker."""
    lab = lab(deadline=180)
    drain = lab.hosts[0].drain_time_s()
    assert drain > CHECK_FALL * CHECK_INTER_MS / 1000, "drain_time must outlast HAProxy's checks"
    traffic = Traffic(lab)
    sleep_until(traffic.t_start + 6)
    restarts = []
    for h in lab.hosts:
        streams = lab.haproxy.sessions()
        t_term = time.time()
        h.sigterm()
        lab.note(f"SIGTERM host {h.name}")
        assert h.wait_exit(15) == 0
        h.start()
        lab.haproxy.wait_status("hosts", {h.name: "UP"}, 10)
        sleep_until(time.time() + 2)
        restarts.append((h.name, streams, t_term, time.time()))
    t_reload = time.time()
    lab.haproxy.reload()
    lab.note("haproxy reload")
    time.sleep(3)
    traffic.join("c1", 20, CLIENTS, "n")
    sleep_until(time.time() + 3)
    acc = traffic.finish()

    movers_all = set()
    moved = []
    for name, streams, t_term, t_next in restarts:
        movers = acc.on_host(streams, name, t_term)
        assert movers, f"nobody was on {name}"
        assert_moved_once(acc, movers, t_term, t_next)
        moved.append(len(movers))
        movers_all |= movers
    assert not [c["name"] for c in acc.clients for s in c["sessions"]
                if s["t_close"] and t_reload <= s["t_close"] < t_reload + 3 and not s["by_us"]], \
        "a client lost its connection to the HAProxy reload"
    per_restart = max(len([s for s in c["sessions"] if t0 < s["t_open"] <= t1])
                      for c in acc.clients for _, _, t0, t1 in restarts)
    s = assert_nothing_silently_lost(acc, movers_all)
    census = acc.census_right_after(restarts[-1][3])
    report("3 rolling restart", {**s, "moved_per_restart": moved,
                                 "max_reconnects_per_restart": per_restart,
                                 "who_right_after_last_s": census, "history": HISTORY_RECOVERY})
    assert census == 0.0, f"who wrong {census}s after the last restart settled"


# ---- 4. slow and lossy client links ----

def test_slow_lossy_clients(lab):
    """Some clients (3 per room, in their own namespace) get a link with 200 ms
    delay and 5 % loss each way. Their peers' p99 latency stays within 10 % of
    that in clean phases of the same run (the median of the phases' p99s; plus
    the clean phases' own spread, the run's noise): measured on 3 probe clients per room
    that run in a process of their own (so that the latency is the network's
    and roomd's, not that of a busy client loop), for every message from a
    clean client. The slow clients keep up (receive everything, in order) or
    are cut with 1008 at max_outbuf; nobody else's messages are reordered or
    lost."""
    lab = lab(deadline=150, slow_nets=("c2",))
    traffic = Traffic(lab, crowds=(("c1", CLIENTS - 60, "c", 4.0), ("c2", 30, "s", 4.0),
                                   ("c1", 30, "p", 1.0)))
    sleep_until(traffic.t_start + 3)
    # Clean and impaired phases alternate, so that load from outside the lab
    # (the machine is shared) falls on both alike.
    phases = []
    for impaired in (False, True) * 6:
        lab.impair("c2", *((200, 0.05) if impaired else (0, 0)))
        t0 = time.time() + 0.5
        sleep_until(t0 + 2.5)
        phases.append((impaired, t0, time.time()))
    lab.impair("c2", 0, 0)
    acc = traffic.finish(settle=4)

    slow_names = {c["name"] for c in acc.clients if c["name"].startswith("s")}
    fast_names = {c["name"] for c in acc.clients} - slow_names
    probes = {c["name"] for c in acc.clients if c["name"].startswith("p")}
    lat = {False: [], True: []}
    phase_p99 = {False: [], True: []}
    for impaired, t0, t1 in phases:
        got = acc.latencies(probes, fast_names, t0, t1)
        lat[impaired] += got
        phase_p99[impaired].append(accounting.percentile(got, 99))
    # Each condition's p99 is the median of its phases' p99s: a stall of the
    # whole machine (it is shared) spoils one phase, not the comparison.
    p99 = {k: accounting.percentile(v, 50) for k, v in phase_p99.items()}
    clean = sorted(phase_p99[False])
    noise = (clean[-2] - clean[1]) / p99[False] / 2     # half the clean phases' inner spread
    p50 = {k: accounting.percentile(v, 50) for k, v in lat.items()}
    slow_lat = accounting.percentile(acc.latencies(slow_names, fast_names), 99)
    cut = {c["name"] for c in acc.clients if c["name"] in slow_names
           for s in c["sessions"] if s["code"] == 1008}
    s = acc.summary()
    report("4 slow lossy clients", {
        **s, "p99_baseline_ms": round(p99[False] * 1000, 2), "p99_impaired_ms": round(p99[True] * 1000, 2),
        "p50_baseline_ms": round(p50[False] * 1000, 2), "p50_impaired_ms": round(p50[True] * 1000, 2),
        "samples": [len(lat[False]), len(lat[True])], "clean_p99_noise": round(noise, 3),
        "phase_p99_ms": {str(k): [round(x * 1000) for x in v] for k, v in phase_p99.items()},
        "slow_p99_ms": round(slow_lat * 1000, 1),
        "slow_cut_1008": len(cut)})
    assert acc.problems == [], acc.problems[:10]
    assert s["lost_by_sender"] == 0 and s["in_doubt"] == 0, s
    fast_missed = sum(len(v) for n, r in acc.receivers.items() if n in fast_names
                      for v in r["miss"].values())
    assert fast_missed == 0, s
    assert not {n for n, k in acc.reconnects().items() if k} - cut, "a client reconnected"
    for n in slow_names - cut:
        assert not any(acc.receivers[n]["miss"].values()), (n, acc.receivers[n]["miss"])
    # Within 10 %, or within what the clean phases differ among themselves:
    # on a shared 2-core machine the tail moves with other people's load.
    assert p99[True] <= (1.10 + noise) * p99[False], \
        f"peers' p99 {p99}, clean phases' noise {noise:.2f}, per phase {phase_p99}"


# ---- 5. binary upgrade ----

def test_binary_upgrade_under_traffic(lab):
    """SIGUSR2 to host B's master under traffic: a new master and new workers
    take B's listening sockets, the old workers drain. B stays UP in HAProxy
    throughout; B's clients are closed only by the drain (1001) and come back
    once; A's and C's are untouched; `who` is right within twice presence_ttl
    (a drained client leaves its rooms at once, so in practice at once);
    nothing is silently lost."""
    lab = lab(deadline=150)
    b = lab.host("B")
    traffic = Traffic(lab)
    sleep_until(traffic.t_start + 6)
    old_master = b.master_pid()
    old_workers = b.worker_pids()
    streams = lab.haproxy.sessions()
    t_usr2 = time.time()
    b.signal(signal.SIGUSR2)
    lab.note("SIGUSR2 host B")
    states = set()
    deadline = t_usr2 + 12
    while time.time() < deadline:
        states.add(lab.haproxy.status("hosts")["B"])
        if b.proc.poll() is not None and b.master_pid() not in (0, old_master):
            break
        time.sleep(0.1)
    assert b.proc.poll() == 0, "the old master did not exit 0"
    new_master = b.master_pid()
    assert new_master not in (0, old_master)
    sleep_until(time.time() + 4)
    states.add(lab.haproxy.status("hosts")["B"])
    acc = traffic.finish()

    on_b = acc.on_host(streams, "B", t_usr2)
    assert len(on_b) >= CLIENTS // 6, f"only {len(on_b)} clients were on B"
    assert_moved_once(acc, on_b, t_usr2, time.time())
    assert states == {"UP"}, f"HAProxy saw B as {states} during the upgrade"
    assert not set(old_workers) & set(b.worker_pids()) or not b.worker_pids()
    s = assert_nothing_silently_lost(acc, on_b)
    census = acc.census_right_after(t_usr2)
    report("5 binary upgrade", {**s, "on_B": len(on_b), "who_right_s": census,
                                "history": HISTORY_RECOVERY})
    assert census is not None and census <= 2 * PRESENCE_TTL, f"who wrong {census}s after the upgrade"


# ---- 6. Redis failover ----

def test_redis_failover_sentinel(lab):
    """Redis is a Sentinel set (a master, two replicas, three sentinels; the
    hosts say `redis sentinel://...`). Under the usual traffic, SENTINEL
    FAILOVER, and once the new master serves, SIGKILL it: the sentinels
    promote the last replica. No client is disconnected; every message is
    delivered to every member that was in its room or answered `unavailable`
    to its sender (never silently lost, never out of Redis's order: the lab
    taps every node, as a replica carries its master's PUBLISHes); `who` and
    `num` are right again soon after the last promotion."""
    lab = lab(deadline=170, sentinel=True)
    s6 = lab.sentinels
    traffic = Traffic(lab)
    sleep_until(traffic.t_start + 8)
    first = s6.master()
    t_failover = time.time()
    s6.failover()
    lab.note(f"SENTINEL FAILOVER (master {first.port})")
    second = s6.wait_master(first.port, 30)
    t_second = time.time() - t_failover
    sleep_until(time.time() + 8)
    t_kill = time.time()
    second.kill()
    lab.note(f"SIGKILL the new master {second.port}")
    third = s6.wait_master(second.port, 40)
    t_third = time.time()
    lab.note(f"master now {third.port}")
    wait_time(lambda: all(h.ready() for h in lab.hosts), 20, "every host ready again")
    t_ready = time.time() - t_third
    sleep_until(t_third + 10)
    acc = traffic.finish(settle=3)

    census = acc.census_right_after(t_third)
    num = acc.num_right_after(t_third)
    s = assert_nothing_silently_lost(acc, set())
    report("6 redis failover (sentinel)", {
        **s, "masters": [first.port, second.port, third.port],
        "failover_s": round(t_second, 2), "promoted_after_kill_s": round(t_third - t_kill, 2),
        "ready_after_promotion_s": round(t_ready, 2),
        "who_right_after_promotion_s": None if census is None else round(census, 2),
        "num_right_after_promotion_s": round(num, 2), "history": HISTORY_RECOVERY})
    assert sum(acc.reconnects().values()) == 0, \
        f"clients were disconnected: {acc.close_codes()}"
    assert s["unavailable"] > 0, "no message was answered unavailable while there was no master"
    assert s["delivered"] > 0 and s["published"] > s["unavailable"], s
    assert census is not None and census <= 2 * PRESENCE_TTL, \
        f"who still wrong {census}s after the last promotion"
    assert num <= 2 * PRESENCE_TTL, f"num still wrong {num:.2f}s after the last promotion"


# ---- 7. same pids, different instances ----

def test_same_pids_split_brain_guard(lab):
    """Hosts A and B each run roomd in a PID namespace of its own, so their
    masters are both pid 1 and their workers have the same pids: only the
    random instance id roomd draws at start ("instance ID; rooms in redis
    ...") tells their workers apart in Redis ("INSTANCE.PID"). Members of
    every room are on A, B and C; SIGKILL every process of B. Nobody removes
    A's members: every member on A or C that stayed is in every `who` answer
    throughout, and the janitors (of A and C) remove B's members within twice
    presence_ttl; nothing is silently lost."""
    lab = lab(deadline=150, pidns_hosts=("A", "B"))
    a, b = lab.host("A"), lab.host("B")
    pids = {h.name: h.logged_worker_pids() for h in (a, b)}
    assert pids["A"] == pids["B"] and len(pids["A"]) == 2, f"worker pids differ: {pids}"
    assert a.instance() and b.instance() and set(a.instance()).isdisjoint(b.instance()), \
        (a.instance(), b.instance())
    traffic = Traffic(lab)
    sleep_until(traffic.t_start + 8)
    streams = lab.haproxy.sessions()
    t_kill = time.time()
    lab.kill_host("B")
    b.crashed()
    lab.haproxy.wait_status("hosts", {"B": "DOWN"}, 10)
    sleep_until(t_kill + PRESENCE_TTL + 9)
    acc = traffic.finish()

    on_b = acc.on_host(streams, "B", t_kill)
    on_a = acc.on_host(streams, "A", t_kill)
    assert len(on_b) >= CLIENTS // 6 and len(on_a) >= CLIENTS // 6, (len(on_a), len(on_b))
    # The messages' ids carry the same pids under two instances.
    ids = {(acc.host_of_id(m), m.split(".")[1]) for m in acc.tap.msg}
    shared = {p for h, p in ids if h == "A"} & {p for h, p in ids if h == "B"}
    assert shared, f"no worker pid accepted messages on both A and B: {sorted(ids)}"
    dropped = members_dropped(acc, on_b, t_kill)
    census = acc.census_right_after(t_kill)
    num = acc.num_right_after(t_kill)
    s = assert_nothing_silently_lost(acc, on_b)
    report("7 same pids on two hosts", {
        **s, "on_A": len(on_a), "on_B": len(on_b), "worker_pids": pids["A"],
        "instances": {"A": a.instance(), "B": b.instance()},
        "stayers_dropped_from_who": len(dropped),
        "who_right_s": None if census is None else round(census, 2), "num_right_s": round(num, 2)})
    assert not dropped, f"members who stayed were missing from who: {dropped[:5]}"
    assert {n for n, k in acc.reconnects().items() if k} == on_b, "a client not on B reconnected"
    assert census is not None and census <= 2 * PRESENCE_TTL, \
        f"who still wrong {census}s after B was killed (presence_ttl {PRESENCE_TTL}s)"
    assert num <= 2 * PRESENCE_TTL, f"num still wrong {num:.2f}s after B was killed"


def members_dropped(acc, movers, t_from, slack=1.0):
    """(watcher's answer time, name) of every `who` answer after t_from that
    left out a client who was not a mover and was in the room from slack
    seconds before the answer to slack seconds after it."""
    inside = collections.defaultdict(list)
    for c in acc.clients:
        if c["name"] in movers:
            continue
        for x in c["sessions"]:
            if x["t_enter"] is not None:
                inside[c["room"]].append((c["name"], x["t_enter"], x["t_close"] or 1e18))
    out = []
    for c in acc.clients:
        if not c["watcher"]:
            continue
        for x in c["sessions"]:
            for e in x["events"]:
                if e[0] == "who" and e[1] >= t_from:
                    must = {n for n, t0, t1 in inside[c["room"]] if t0 <= e[1] - slack and t1 >= e[1] + slack}
                    out += [(round(e[1] - t_from, 2), n) for n in sorted(must - set(e[2] or []))]
    return out


# ---- 1b. host freeze ----

def test_host_freeze(lab):
    """SIGSTOP every process of host B for twice presence_ttl, then SIGCONT:
    a VM stall or a long pause. While B is frozen its presence expires and the
    other hosts remove its members; HAProxy marks it down. After it thaws, B's
    clients (still connected: nothing closed their connections) must be back
    in `who` and `num` everywhere, and they must have received every message,
    in order: Redis kept B's subscription's backlog."""
    lab = lab(deadline=150)
    traffic = Traffic(lab)
    sleep_until(traffic.t_start + 6)
    streams = lab.haproxy.sessions()
    t_stop = time.time()
    lab.kill_host("B", signal.SIGSTOP)
    lab.haproxy.wait_status("hosts", {"B": "DOWN"}, 10)
    sleep_until(t_stop + 2 * PRESENCE_TTL)
    t_cont = time.time()
    lab.kill_host("B", signal.SIGCONT)
    lab.haproxy.wait_status("hosts", {"B": "UP"}, 10)
    t_up = time.time() - t_cont
    sleep_until(t_cont + 3 * PRESENCE_TTL)
    acc = traffic.finish()

    on_b = acc.on_host(streams, "B", t_stop)
    assert len(on_b) >= CLIENTS // 6, f"only {len(on_b)} clients were on B"
    census = acc.census_right_after(t_cont)
    s = acc.summary()
    report("1b host freeze", {**s, "on_B": len(on_b), "haproxy_up_again_s": round(t_up, 2),
                              "who_right_after_thaw_s": None if census is None else round(census, 2)})
    assert sum(acc.reconnects().values()) == 0, "a client lost its connection"
    assert acc.problems == [], acc.problems[:10]
    assert s["lost_by_sender"] == 0, s
    assert (s["missed_gap"], s["missed_hole"], s["missed_head"], s["missed_tail"]) == (0, 0, 0, 0), s
    assert census is not None and census <= 2 * PRESENCE_TTL, \
        f"who still wrong {census}s after B thawed"
