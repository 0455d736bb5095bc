#!/usr/bin/env python3
# soak-agents.py: the traffic actors tools/soak runs (one subcommand each). Every loop is bounded
# by an end time (--until, seconds since the epoch) and paced, so a soak never loads the machine
# beyond a few per cent of a core per actor. Counts go to stdout as one "name=value ..." line at
# exit; tools/soak collects them for its summary. Not a test of its own: see tools/soak --help.
import argparse, os, random, signal, socket, struct, sys, time

stopping = False


def on_term(*_):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def running(until):
    return not stopping and time.time() < until


def ether(dst, src, ethertype, payload):
    return dst + src + struct.pack("!H", ethertype) + payload


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


# --- innocent flow ---------------------------------------------------------------------------
def send(a):
    """Paced UDP datagrams carrying a sequence number; writes 'seq send_time' per datagram."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    interval = 1.0 / a.rate
    sent = []
    start = time.time()
    seq = 0
    while not stopping and seq < a.count:
        due = start + seq * interval
        now = time.time()
        if due > now:
            time.sleep(due - now)
        t = time.time()
        try:
            s.sendto(struct.pack("!Qd", seq, t) + b"\0" * 48, (a.dst, a.port))
        except OSError:
            pass  # e.g. ENETDOWN while our own link is deliberately down: counted as lost
        sent.append((seq, t))
        seq += 1
    with open(a.out, "w") as f:
        for q, t in sent:
            f.write(f"{q} {t:.6f}\n")
    print(f"sent={len(sent)}")


def recv(a):
    """Records each sequence number received until --until (or SIGTERM)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("0.0.0.0", a.port))
    s.settimeout(0.2)
    got = set()
    dups = 0
    with open(a.ready, "w"):
        pass
    while running(a.until):
        try:
            data = s.recv(2048)
        except socket.timeout:
            continue
        if len(data) >= 8:
            (q,) = struct.unpack("!Q", data[:8])
            if q in got:
                dups += 1
            got.add(q)
    with open(a.out, "w") as f:
        f.write("\n".join(str(q) for q in sorted(got)))
    print(f"received={len(got)} duplicates={dups}")


# --- VMs ---------------------------------------------------------------------------------------
def vm_frames(mac, n):
    src = mac_bytes(mac)
    return [ether(b"\xff" * 6, src, 0x88B5, struct.pack("!I", i) + b"\0" * 42) for i in range(n)]


def drain(sock, seconds):
    end = time.time() + seconds
    got = 0
    sock.settimeout(0.05)
    while time.time() < end:
        try:
            d = sock.recv(65536)
            if not d:
                break
            got += len(d)
        except (socket.timeout, BlockingIOError):
            continue
        except OSError:
            break
    return got


def vmstream(a):
    """A VM on a stream-server port that connects, sends a few frames, reads, leaves; in a loop."""
    connects = refused = frames = 0
    while running(a.until):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(a.path)
            connects += 1
            for f in vm_frames(a.mac, 8):
                s.sendall(struct.pack("!I", len(f)) + f)
                frames += 1
            drain(s, random.uniform(0.05, 0.4))
        except OSError:
            refused += 1
        finally:
            s.close()
        time.sleep(random.uniform(0.1, 0.3))
    print(f"vm_stream_connects={connects} vm_stream_failed={refused} vm_stream_frames={frames}")


def vmdgram(a):
    """A VM on a dgram port that binds its socket, sends, reads, closes and unlinks; in a loop."""
    rounds = frames = errors = 0
    while running(a.until):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            try:
                os.unlink(a.local)
            except FileNotFoundError:
                pass
            s.bind(a.local)
            rounds += 1
            for f in vm_frames(a.mac, 8):
                try:
                    s.sendto(f, a.path)
                    frames += 1
                except OSError:
                    errors += 1
            drain(s, random.uniform(0.05, 0.4))
        finally:
            s.close()
            try:
                os.unlink(a.local)
            except FileNotFoundError:
                pass
        time.sleep(random.uniform(0.1, 0.3))
    print(f"vm_dgram_rounds={rounds} vm_dgram_frames={frames} vm_dgram_send_errors={errors}")


def hostile(a):
    """A peer on a stream port sending what no VM should: garbage, huge or zero length prefixes,
    frames cut short, a slow drip; and, on the dgram port, empty and oversized datagrams."""
    conns = 0
    kinds = {}
    while running(a.until):
        kind = random.choice(["garbage", "huge-prefix", "zero-prefix", "partial", "drip",
                              "valid-then-garbage", "runt", "dgram-empty", "dgram-oversized"])
        kinds[kind] = kinds.get(kind, 0) + 1
        try:
            if kind.startswith("dgram"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                size = 0 if kind == "dgram-empty" else random.choice([1519, 9000, 70000, 200000])
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 19)
                try:
                    for _ in range(3):
                        s.sendto(b"\xaa" * size, a.dgram)
                except OSError:
                    pass
                s.close()
            else:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(2)
                s.connect(a.path)
                conns += 1
                if kind == "garbage":
                    s.sendall(os.urandom(random.randint(1, 4096)))
                elif kind == "huge-prefix":
                    s.sendall(struct.pack("!I", random.choice([0xFFFFFFFF, 0x7FFFFFFF, 65536, 1519])) + b"x" * 64)
                elif kind == "zero-prefix":
                    s.sendall(struct.pack("!I", 0) * 16)
                elif kind == "partial":
                    s.sendall(struct.pack("!I", 1000) + b"y" * random.randint(0, 999))
                elif kind == "drip":
                    s.sendall(struct.pack("!I", 100))
                    for _ in range(5):
                        if stopping:
                            break
                        s.sendall(b"z")
                        time.sleep(0.2)
                elif kind == "valid-then-garbage":
                    f = ether(b"\xff" * 6, mac_bytes(a.mac), 0x88B5, b"\0" * 46)
                    s.sendall(struct.pack("!I", len(f)) + f + os.urandom(64))
                elif kind == "runt":
                    s.sendall(struct.pack("!I", 5) + b"12345")
                drain(s, 0.05)
                s.close()
        except OSError:
            pass  # refused, reset by the daemon: both are fine answers to garbage
        time.sleep(random.uniform(0.1, 0.3))
    detail = " ".join(f"hostile_{k.replace('-', '_')}={v}" for k, v in sorted(kinds.items()))
    print(f"hostile_connections={conns} {detail}")


# --- MAC flood -----------------------------------------------------------------------------------
def flood(a):
    """Frames from random locally administered source MACs to random unicast destinations, sent
    from a raw AF_PACKET socket at a bounded rate (bursts of --burst every 50 ms)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.ifname, 0))
    sent = errors = 0
    tick = 0.05
    next_t = time.time()
    while running(a.until):
        for _ in range(a.burst):
            src = bytes([random.randrange(256) & 0xFC | 0x02]) + os.urandom(5)
            dst = bytes([random.randrange(256) & 0xFC | 0x02]) + os.urandom(5)
            try:
                s.send(ether(dst, src, 0x88B5, b"\0" * 46))
                sent += 1
            except OSError:
                errors += 1  # ENETDOWN etc.; the flood host is never flapped, so rare
        next_t += tick
        d = next_t - time.time()
        if d > 0:
            time.sleep(d)
        else:
            next_t = time.time()
    print(f"flood_frames={sent} flood_errors={errors}")


# --- analysis ------------------------------------------------------------------------------------
def analyse(a):
    """Innocent-flow loss against the deliberate outages. Prints the verdict line tools/soak reads."""
    sent = []
    with open(a.sent) as f:
        for line in f:
            q, t = line.split()
            sent.append((int(q), float(t)))
    got = set()
    with open(a.received) as f:
        for line in f:
            if line.strip():
                got.add(int(line))
    windows = []
    with open(a.outages) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                windows.append((float(parts[1]), float(parts[2]) + a.grace))
    lost = [(q, t) for q, t in sent if q not in got]
    inside = [(q, t) for q, t in lost if any(lo <= t <= hi for lo, hi in windows)]
    outside = [(q, t) for q, t in lost if not any(lo <= t <= hi for lo, hi in windows)]
    # How long after each outage ended the flow came back (first received datagram sent after it).
    recover = []
    for lo, hi in windows:
        up = hi - a.grace
        after = [t for q, t in sent if t >= up and q in got]
        if after:
            recover.append(min(after) - up)
    worst = max(recover) if recover else 0.0
    print(f"flow_sent={len(sent)} flow_received={len(got)} flow_lost={len(lost)} "
          f"flow_lost_in_outages={len(inside)} flow_lost_outside={len(outside)} "
          f"outages={len(windows)} worst_recovery_s={worst:.3f}")
    if outside:
        t0 = sent[0][1] if sent else 0
        runs = []
        for q, t in outside:
            if runs and q == runs[-1][1] + 1:
                runs[-1][1] = q
            else:
                runs.append([q, q, t - t0])
        for lo, hi, at in runs[:20]:
            print(f"  lost outside outages: seq {lo}-{hi} ({hi - lo + 1}) at +{at:.2f}s", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("send"); c.add_argument("--dst"); c.add_argument("--port", type=int)
    c.add_argument("--rate", type=float); c.add_argument("--count", type=int); c.add_argument("--out")
    c = sub.add_parser("recv"); c.add_argument("--port", type=int); c.add_argument("--until", type=float)
    c.add_argument("--out"); c.add_argument("--ready")
    c = sub.add_parser("vmstream"); c.add_argument("--path"); c.add_argument("--mac"); c.add_argument("--until", type=float)
    c = sub.add_parser("vmdgram"); c.add_argument("--path"); c.add_argument("--local"); c.add_argument("--mac")
    c.add_argument("--until", type=float)
    c = sub.add_parser("hostile"); c.add_argument("--path"); c.add_argument("--dgram"); c.add_argument("--mac")
    c.add_argument("--until", type=float)
    c = sub.add_parser("flood"); c.add_argument("--ifname"); c.add_argument("--burst", type=int)
    c.add_argument("--until", type=float)
    c = sub.add_parser("analyse"); c.add_argument("--sent"); c.add_argument("--received"); c.add_argument("--outages")
    c.add_argument("--grace", type=float)
    a = p.parse_args()
    globals()[a.cmd](a)


if __name__ == "__main__":
    main()
