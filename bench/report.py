#!/usr/bin/env python3
"""bench/report.py: turns bench/run's result lines into the Markdown section appended to
docs/benchmarks.md (medians, [min-max], ratios to the kernel bridge and to vde_switch measured
in the same run, the targets of issues 3 and 7) and gnuplot SVG charts next to it.

Input lines: `FORWARDER RUN tcp=G tcp_nogso=G udp64=RX,SENT,CPU udp512=.. udp1500=.. lat=P50,P99,P999,LOST`
(the impair-neighbour rows add `flowb=RX,OFFERED bread=N bdelayed=N bheldfull=N blost=N aimpaired=N busy=CPU stats=ok|none`)
Usage: report.py RESULTS --runs N --seconds S --charts DIR [--stamp YYYYMMDD-HHMM]"""
import argparse, datetime, os, platform, statistics, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("results"); ap.add_argument("--runs", default="?"); ap.add_argument("--seconds", default="?")
ap.add_argument("--charts", default="docs/benchmarks")
ap.add_argument("--stamp", help="chart file prefix (default: now, UTC), to redraw a past run's charts")
a = ap.parse_args()

rows, order = {}, []
for line in open(a.results):
    parts = line.split()
    if len(parts) < 3: continue
    f, kv = parts[0], dict(p.split("=", 1) for p in parts[2:])
    if f not in rows: rows[f] = []; order.append(f)
    r = {"tcp": float(kv["tcp"]), "tcp_nogso": float(kv["tcp_nogso"])}
    for s in (64, 512, 1500):
        rx, sent, cpu = kv[f"udp{s}"].split(",")
        r[f"fps{s}"], r[f"sent{s}"], r[f"cpu{s}"] = float(rx), float(sent), float(cpu)
        if float(rx) < 0:   # a receiver counter that went backwards (seen once on a tap): no measurement
            r[f"fps{s}"] = r[f"cpu{s}"] = float("nan")
        r[f"loss{s}"] = 1 - float(rx) / float(sent) if float(sent) and float(rx) >= 0 else float("nan")
    p50, p99, p999, lost = kv["lat"].split(",")
    r.update(p50=float(p50), p99=float(p99), p999=float(p999), lost=int(lost))
    if "flowb" in kv:   # impair-neighbour rows: flow B and the impair counters
        bd, bo = kv["flowb"].split(",")
        r.update(bdeliv=float(bd), boffer=float(bo), stats=kv.get("stats", "none"))
        for k in ("bread", "bdelayed", "bheldfull", "blost", "aimpaired", "busy"): r[k] = float(kv.get(k, "nan"))
    rows[f].append(r)

def vals(f, k): return [x[k] for x in rows.get(f, []) if x[k] == x[k]]   # NaN: not measurable there
def med(f, k): v = vals(f, k); return statistics.median(v) if v else float("nan")
def rng(f, k): v = vals(f, k); return (min(v), max(v)) if v else (float("nan"), float("nan"))
def ratio(f, k, ref):
    d = med(ref, k) if ref in rows else 0
    return f"{med(f, k) / d:.2f}" if d and d == d else "–"
def cell(f, k, fmt):
    if not vals(f, k): return "n/a"
    lo, hi = rng(f, k)
    return f"{fmt(med(f, k))} [{fmt(lo)}–{fmt(hi)}]"
g = lambda v: f"{v:.2f}"
n = lambda v: f"{v/1000:,.0f}k"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
load = open("/proc/loadavg").read().split()[:3]
now = datetime.datetime.now(datetime.timezone.utc)
stamp = a.stamp or now.strftime("%Y%m%d-%H%M")
userspace = [f for f in order if f not in ("direct", "kernel-bridge", "macvlan-bridge", "kernel-vxlan")]

out = []
p = out.append
p(f"\n## Run of {now:%Y-%m-%d %H:%M} UTC\n")
p(f"Kernel {platform.release()}, {cpu}, {os.cpu_count()} cores, load average {' '.join(load)} at the end "
  f"(other helpers build and test on the same 2 cores during runs: absolute figures are noisy, ratios of the "
  f"same run are the result); {a.runs} run(s) per forwarder, interleaved, {a.seconds} s per load. "
  "Medians [min–max]; ×KB = ratio to the in-kernel bridge, ×vde = to vde_switch, ×RW = to the plain "
  "read/write forwarder (no vnet header), all of the same run. `direct` is the generator into a veth pair with "
  "no forwarder: its ceiling.\n")

p("### Frames per second received (bench/udpgen, UDP, 8 flows; counted at the receiver's interface)\n")
p("| forwarder | 64 B frames/s | ×KB | ×vde | ×RW | loss | 512 B frames/s | ×vde | 1500 B frames/s | 1500 B Gbit/s | ×vde | CPU s / M frames (64 B) |")
p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for f in order:
    c = f"{med(f, 'cpu64'):.2f}" if f in userspace else "– (kernel)"
    p(f"| {f} | {cell(f, 'fps64', n)} | {ratio(f, 'fps64', 'kernel-bridge')} | {ratio(f, 'fps64', 'vde')} | "
      f"{ratio(f, 'fps64', 'plain-rw')} | {med(f, 'loss64')*100:.1f}% | {cell(f, 'fps512', n)} | {ratio(f, 'fps512', 'vde')} | "
      f"{cell(f, 'fps1500', n)} | {med(f, 'fps1500')*1500*8/1e9:.2f} | {ratio(f, 'fps1500', 'vde')} | {c} |")

p("\n### TCP (iperf3, one flow, Gbit/s) and UDP request/response latency (tbb-latency, µs)\n")
p("| forwarder | TCP, sender GSO/TSO on | ×KB | ×vde | TCP, GSO/TSO off | ×KB | latency p50 | p99 | p99.9 | p99 ×RW | lost |")
p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for f in order:
    p(f"| {f} | {cell(f, 'tcp', g)} | {ratio(f, 'tcp', 'kernel-bridge')} | {ratio(f, 'tcp', 'vde')} | "
      f"{cell(f, 'tcp_nogso', g)} | {ratio(f, 'tcp_nogso', 'kernel-bridge')} | {med(f, 'p50'):.0f} | {med(f, 'p99'):.0f} | "
      f"{med(f, 'p999'):.0f} | {ratio(f, 'p99', 'plain-rw')} | {sum(x['lost'] for x in rows[f])} |")

# Charts (gnuplot, SVG). One data file per chart; forwarders on the x axis.
os.makedirs(a.charts, exist_ok=True)
charts = []
def chart(name, title, ylabel, cols, keys, logy=False, only=None):
    dat = os.path.join(a.charts, f"{stamp}-{name}.dat")
    svg = os.path.join(a.charts, f"{stamp}-{name}.svg")
    with open(dat, "w") as d:
        d.write("# forwarder " + " ".join(c.replace(" ", "_") for c in cols) + "\n")   # a comment: not a data row
        for f in (only or order): d.write(f + " " + " ".join(f"{med(f, k):.4f}" for k in keys) + "\n")
    plots = ", ".join(f"'{dat}' using {i + 2}:xtic(1) title '{c}'" for i, c in enumerate(cols))
    script = f"""set terminal svg size 900,420 dynamic font 'sans,11' background '#ffffff'
set output '{svg}'
set title '{title}'
set ylabel '{ylabel}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key top right
set grid ytics
set xtics rotate by -35 font ',9'
set yrange [{'1' if logy else '0'}:*]
{'set logscale y' if logy else ''}
plot {plots}
"""
    r = subprocess.run(["gnuplot"], input=script.encode(), capture_output=True)
    os.unlink(dat)
    if r.returncode == 0 and os.path.exists(svg): charts.append((title, svg))
    else: print(f"(chart {name} not drawn: {r.stderr.decode()[:200]})", file=sys.stderr)

chart("fps", "UDP frames/s received by frame size (median)", "frames/s", ["64 B", "512 B", "1500 B"], ["fps64", "fps512", "fps1500"])
chart("gbps", "TCP Gbit/s per forwarder (median)", "Gbit/s", ["GSO/TSO on", "GSO/TSO off"], ["tcp", "tcp_nogso"])
chart("latency", "UDP request/response latency (median of runs)", "µs (log)", ["p50", "p99", "p99.9"], ["p50", "p99", "p999"], logy=True)
if userspace:
    chart("cpu", "Forwarder CPU seconds per million frames received (median)", "CPU s / M frames",
          ["64 B", "512 B", "1500 B"], ["cpu64", "cpu512", "cpu1500"], only=userspace)
if charts:
    p("")
    rel = os.path.relpath(a.charts, "docs")
    for title, svg in charts: p(f"![{title}]({rel}/{os.path.basename(svg)})")

# Targets of issues 3 and 7, computed from this run.
def x(f, k, ref): 
    d = med(ref, k)
    return med(f, k) / d if f in rows and ref in rows and d else float("nan")
def verdict(v, goal, lower_is_better=False):
    if v != v: return "not measured"
    ok = v <= goal if lower_is_better else v >= goal
    shown = f"{v:.2f}" if ok or f"{v:.2f}" != f"{goal:.2f}" else f"{v:.3f}"   # 0.946 missed 0.95: say so
    return ("met" if ok else "**missed**") + f" ({shown}×, goal {'≤' if lower_is_better else '≥'} {goal}×)"
tb = "tapbridge-1w"
p("\n### Targets against this run\n")
p("| target | tapbridge-1w (learning switch, 1 worker) |")
p("| --- | --- |")
p(f"| 64 B frames ≥ 2× vde_switch | {verdict(x(tb, 'fps64', 'vde'), 2)} |")
p(f"| 64 B frames ≥ 1.5× plain read/write | {verdict(x(tb, 'fps64', 'plain-rw'), 1.5)} (×RWv {x(tb, 'fps64', 'plain-rw-vnet'):.2f}) |")
p(f"| TCP with GSO ≥ 70% of the kernel bridge | {verdict(x(tb, 'tcp', 'kernel-bridge'), 0.7)} |")
p(f"| TCP with GSO ≥ 5× vde_switch | {verdict(x(tb, 'tcp', 'vde'), 5)} |")
p(f"| latency p99 ≤ 2× plain read/write | {verdict(x(tb, 'p99', 'plain-rw'), 2, lower_is_better=True)} |")
p(f"| 2 workers ≥ 1.6× 1 worker, multi-queue macvtaps (64 B) | {verdict(x('tapbridge-mq-2w', 'fps64', 'tapbridge-mq-1w'), 1.6)}; "
  f"single-queue 2w/1w {x('tapbridge-2w', 'fps64', 'tapbridge-1w'):.2f}× |")
p(f"| 64 B frames ≥ 0.95× the io_uring floor (issue 13) | {verdict(x(tb, 'fps64', 'uring-floor'), 0.95)} |")
p(f"| generator ceiling (direct) / fastest forwarder, 64 B | "
  f"{med('direct', 'fps64') / max(med(f, 'fps64') for f in order if f != 'direct'):.2f}× |" if "direct" in rows and len(order) > 1 else "")

# Issue 13: the same kernel boundary three ways (blocking read/write, epoll, io_uring) and
# tapbridge on top of the io_uring one. Rows present in this run only.
designs = [f for f in ("plain-rw-vnet", "epoll-rw", "uring-floor", "tapbridge-1w", "tapbridge-base-1w") if f in rows]
if "uring-floor" in rows or "epoll-rw" in rows:
    p("\n### io_uring, epoll and blocking read/write (issue 13)\n")
    p("All rows: the same passthru macvtaps behind the same veths, 12-byte vnet header, checksum/TSO offloads. "
      "`plain-rw-vnet`: 2 threads, blocking read()/write(); `epoll-rw`: 1 thread, epoll, read() until EAGAIN, "
      "write() per frame (bench/epollfwd.c); `uring-floor`: 1 thread, multishot reads into a provided-buffer ring, "
      "batched writev SQEs (bench/uringfloor.c: tapbridge's kernel boundary and nothing else); `tapbridge-1w`: "
      "the learning switch, 1 worker. Gbit/s of UDP frames counts the 64/512/1500 bytes on the wire (FCS included).\n")
    p("| forwarder | 64 B frames/s | Gbit/s | CPU s/M | 512 B frames/s | Gbit/s | CPU s/M | 1500 B frames/s | Gbit/s | CPU s/M | TCP GSO on | TCP GSO off | p50 µs | p99 µs |")
    p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for f in designs:
        c = []
        for sz in (64, 512, 1500):
            c += [cell(f, f"fps{sz}", n), f"{med(f, f'fps{sz}') * sz * 8 / 1e9:.2f}", f"{med(f, f'cpu{sz}'):.2f}"]
        p(f"| {f} | " + " | ".join(c) + f" | {cell(f, 'tcp', g)} | {cell(f, 'tcp_nogso', g)} | {med(f, 'p50'):.0f} | {med(f, 'p99'):.0f} |")
    pairs = [("tapbridge-1w", "uring-floor"), ("tapbridge-1w", "epoll-rw"), ("uring-floor", "epoll-rw"),
             ("uring-floor", "plain-rw-vnet"), ("epoll-rw", "plain-rw-vnet")]
    if "tapbridge-base-1w" in rows: pairs.insert(1, ("tapbridge-base-1w", "uring-floor"))
    pairs = [(a_, b_) for a_, b_ in pairs if a_ in rows and b_ in rows]
    metrics = [("64 B frames/s", "fps64"), ("512 B frames/s", "fps512"), ("1500 B frames/s", "fps1500"),
               ("TCP, GSO/TSO on", "tcp"), ("TCP, GSO/TSO off", "tcp_nogso"),
               ("CPU s per M frames, 64 B (lower is cheaper)", "cpu64"), ("CPU s per M frames, 512 B", "cpu512"),
               ("CPU s per M frames, 1500 B", "cpu1500"), ("latency p99 (lower is faster)", "p99")]
    if pairs:
        p("\nRatios of medians (goal for tapbridge-1w / uring-floor: ≥ 0.95 for the rates, ≤ 1.05 for CPU and latency):\n")
        p("| metric | " + " | ".join(f"{a_} / {b_}" for a_, b_ in pairs) + " |")
        p("| --- |" + " --- |" * len(pairs))
        for label, k in metrics:
            p(f"| {label} | " + " | ".join(f"{x(a_, k, b_):.2f}" for a_, b_ in pairs) + " |")

# Issue 11: the write-only floor into a macvtap beside the vhost-user and VM-socket rows.
if "uring-write-floor" in rows:
    p("\n### The write floor: guest memory -> macvtap (issue 11)\n")
    p("`uring-write-floor`: bench/uringwritefloor.c writes pre-built frames from memory into the receiver's "
      "passthru macvtap as fast as one thread can (12-byte vnet header, one writev per frame, 64 per "
      "io_uring_enter, SINGLE_ISSUER|DEFER_TASKRUN), no reads: the ceiling of any guest -> macvtap forwarder. "
      "Counted at the receiver's interface like `tapbridge-vhost`; its CPU is the writer's own.\n")
    p("| row | 64 B frames/s | CPU s/M | 512 B frames/s | CPU s/M | 1500 B frames/s | CPU s/M |")
    p("| --- | --- | --- | --- | --- | --- | --- |")
    for f in [f for f in ("uring-write-floor", "tapbridge-vhost", "tapbridge-base-vhost", "tapbridge-vm", "tapbridge-1w") if f in rows]:
        p(f"| {f} | " + " | ".join(f"{cell(f, f'fps{sz}', n)} | {med(f, f'cpu{sz}'):.2f}" for sz in (64, 512, 1500)) + " |")
    pairs = [(a_, b_) for a_, b_ in (("tapbridge-vhost", "uring-write-floor"), ("uring-write-floor", "tapbridge-vm"),
                                     ("tapbridge-vhost", "tapbridge-vm")) if a_ in rows and b_ in rows]
    if pairs:
        p("\n| ratio of medians | " + " | ".join(f"{a_} / {b_}" for a_, b_ in pairs) + " |")
        p("| --- |" + " --- |" * len(pairs))
        for sz in (64, 512, 1500):
            p(f"| {sz} B frames/s | " + " | ".join(f"{x(a_, f'fps{sz}', b_):.2f}" for a_, b_ in pairs) + " |")
        # CPU per frame holds up better than rates on a busy machine: the vhost row's testpmd polls
        # one of the two cores, so under other load its worker gets less of the rest than the writer.
        for sz in (64, 512, 1500):
            p(f"| CPU s per M frames, {sz} B (lower is cheaper) | " + " | ".join(f"{x(a_, f'cpu{sz}', b_):.2f}" for a_, b_ in pairs) + " |")

# Issue 15: a flood through a delayed port beside another flow on the same (single) worker.
nb = [f for f in ("impair-neighbour-off", "impair-neighbour-delay", "impair-neighbour-loss", "impair-neighbour-idle",
                  "impair-neighbour-none") if f in rows]
if nb:
    p("\n### Impair: a delayed neighbour on the same worker (issue 15)\n")
    p("One daemon, one worker, three hosts. Flow A (measured): udpgen tbb-s -> macvtap tbb-ms -> tbb-mr -> tbb-r, "
      "64-byte frames. Flow B: udpgen in a third host tbb-n floods 64-byte frames to tbb-s, in by tbb-mn, out by "
      "tbb-ms. `-off`: B floods, impair in the pipeline, nothing impaired; `-delay`: the same flood, tbb-mn's "
      "ingress delayed (`delay`, `limit = 100000`: the worker's share of held buffers is the bound); `-loss`: the same flood "
      "mostly dropped (`loss`) by the same handler, nothing held (a control for -delay's holding); `-idle`: the "
      "-delay configuration with B silent; `-none`: no impair handler, B silent. Per second over flow A's load; "
      "\"B delayed\" counts `impair_delayed` of tbb-mn (every frame given a delay, held or not), \"B over the bound\" "
      "the `impair-limit` drops (charged to B's egress port tbb-ms) of frames the hold had no room for; \"A's ports "
      "impaired\" sums every impair counter of tbb-ms and tbb-mr that moved (must be 0).\n")
    p("| row | flow A frames/s | A offered/s | flow B delivered/s | B offered/s | B read/s | B delayed/s | B over the bound/s | B lost/s | A's ports impaired | daemon CPU s/s |")
    p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for f in nb:
        p(f"| {f} | {cell(f, 'fps64', n)} | {n(med(f, 'sent64'))} | {n(med(f, 'bdeliv'))} | {n(med(f, 'boffer'))} | "
          f"{n(med(f, 'bread'))} | {med(f, 'bdelayed'):,.0f} | {med(f, 'bheldfull'):,.0f} | {med(f, 'blost'):,.0f} | {sum(v['aimpaired'] for v in rows[f] if v['aimpaired'] == v['aimpaired']):.0f} | "
          f"{med(f, 'busy'):.2f} |")
    if any(v.get("stats") != "ok" for f in nb for v in rows[f]): p("\n(some samples had no `tapbridge stats`: their counter columns read 0)")
    p("")
    p(f"- Criterion (issue 15): flow A with a delayed flood beside it / with the same flood undelayed, "
      f"`impair-neighbour-delay` / `impair-neighbour-off`: {verdict(x('impair-neighbour-delay', 'fps64', 'impair-neighbour-off'), 0.9)}.")
    if "impair-neighbour-loss" in rows:
        p(f"- Holding against dropping the same flood at the same place (`-delay` / `-loss`): "
          f"{x('impair-neighbour-delay', 'fps64', 'impair-neighbour-loss'):.2f}× flow A's frames.")
    if "impair-neighbour-idle" in rows:
        p(f"- Flow A beside the delayed flood / alone with the same configuration (`-delay` / `-idle`): "
          f"{x('impair-neighbour-delay', 'fps64', 'impair-neighbour-idle'):.2f}×.")
    if "impair-neighbour-none" in rows and "impair-neighbour-idle" in rows:
        p(f"- The handler configured, no impairment on flow A's ports, against no impair handler (`-idle` / `-none`): "
          f"{x('impair-neighbour-idle', 'fps64', 'impair-neighbour-none'):.2f}× the frames, "
          f"{x('impair-neighbour-idle', 'cpu64', 'impair-neighbour-none'):.2f}× the CPU per frame.")
print("\n".join(out))
