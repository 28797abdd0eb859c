#!/usr/bin/env python3
"""Where an upload's CPU goes (docs/dsr.md, "Where an upload's CPU goes").

Two steps, beside `cargo run --release -p hive-mesh-bench --example bulk -- SECONDS ROUNDS`
(run as root, the bench under the lab lock, its stderr kept in a log):

  profile_upload.py watch  OUT [--lab dsrbulk] [--perf] [--max-seconds N]
      Until the bench's lab is gone (or N seconds): for every upload run (an `iperf3 -c`
      without `-R` in the lab's client), records the BPF programs' run_cnt/run_time_ns
      (kernel.bpf_stats_enabled=1, restored afterwards), each program's node and hook
      (`bpftool net` in each lab namespace), every lab namespace's /proc/net/dev, and with
      --perf a system-wide `perf record -a -g -F 499` over the run. OUT/runs.json.

  profile_upload.py report OUT BENCH_LOG
      Labels the runs with the bench's upload lines (same order), classifies the perf
      samples by stack and prints, per path, CPU per segment by category, the programs' ns
      per run and runs per segment. OUT/report.json.

The recipe used for docs/dsr.md (as root, from the repository's root):

  flock -o /tmp/hive-lab.lock bash -c '
    python3 dataplane-user/mesh-bench/profile_upload.py watch OUT --perf 2> OUT/watch.log &
    nice -n 15 cargo run --release -p hive-mesh-bench --example bulk -- 5 3 2> OUT/bench.log
    wait'
  python3 dataplane-user/mesh-bench/profile_upload.py report OUT OUT/bench.log

The watcher ends when the bench's lab is gone. Figures, never assertions. Bounded loops
only; perf is stopped and bpf_stats_enabled restored on every exit.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict

POLL = 0.02
MEMBERS = ["client", "n1", "n2", "n3", "underlay"]


def sh(args, ns=None):
    if ns is not None:
        args = ["ip", "netns", "exec", ns] + args
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout


def upload_clients():
    """pids of `iperf3 -c ...` processes without -R."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"iperf3") and b"-c" in argv and b"-R" not in argv:
            found.append(int(pid))
    return found


def netdev(ns):
    out = {}
    for line in sh(["cat", "/proc/net/dev"], ns).splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if len(f) >= 10:
            out[name.strip()] = {
                "rx_bytes": int(f[0]),
                "rx_packets": int(f[1]),
                "tx_bytes": int(f[8]),
                "tx_packets": int(f[9]),
            }
    return out


def prog_stats():
    try:
        progs = json.loads(sh(["bpftool", "prog", "show", "-j"]) or "[]")
    except json.JSONDecodeError:
        return {}
    return {
        str(p["id"]): {
            "name": p.get("name", ""),
            "run_cnt": p.get("run_cnt", 0),
            "run_time_ns": p.get("run_time_ns", 0),
        }
        for p in progs
    }


def attachments(lab):
    """prog id -> "member:dev:hook" for every program attached in the lab's namespaces."""
    where = {}
    for m in MEMBERS:
        ns = f"hive-{lab}-{m}"
        try:
            net = json.loads(sh(["bpftool", "net", "-j"], ns) or "[]")
        except json.JSONDecodeError:
            continue
        for block in net:
            for hook in ("xdp", "tc"):
                for a in block.get(hook, []):
                    kind = a.get("kind", a.get("mode", hook))
                    pid = a.get("id", a.get("prog_id"))
                    where[str(pid)] = f"{m}:{a.get('devname', '?')}:{kind}"
    return where


def snapshot(lab):
    return {
        "t": time.monotonic(),
        "progs": prog_stats(),
        "netdev": {m: netdev(f"hive-{lab}-{m}") for m in MEMBERS},
    }


def lab_exists(lab):
    return os.path.exists(f"/run/netns/hive-{lab}-client")


def watch(args):
    os.makedirs(args.out, exist_ok=True)
    old = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1")
    runs, seen, perf = [], set(), None
    start = time.monotonic()
    saw_lab = False
    try:
        while time.monotonic() - start < args.max_seconds:
            if lab_exists(args.lab):
                saw_lab = True
            elif saw_lab:
                break
            pids = [p for p in upload_clients() if p not in seen]
            if not pids:
                time.sleep(POLL)
                continue
            pid = pids[0]
            seen.add(pid)
            n = len(runs)
            data = os.path.join(args.out, f"run-{n}.perf.data")
            if args.perf:
                perf = subprocess.Popen(
                    ["perf", "record", "-a", "-g", "-F", "499", "-o", data],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            # Another user may have turned the stats off since: they must be on for this run.
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write("1")
            where = attachments(args.lab)
            before = snapshot(args.lab)
            deadline = time.monotonic() + 600
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(POLL)
            after = snapshot(args.lab)
            if perf is not None:
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=60)
                perf = None
            seconds = after["t"] - before["t"]
            if seconds < 1.0:  # a connect attempt before the server listened
                if os.path.exists(data):
                    os.remove(data)
                continue
            runs.append(
                {
                    "seconds": seconds,
                    "perf": data if args.perf else None,
                    "where": where,
                    "before": before,
                    "after": after,
                }
            )
            print(f"upload run {n}: {seconds:.1f} s", file=sys.stderr, flush=True)
            with open(os.path.join(args.out, "runs.json"), "w") as f:
                json.dump(runs, f)
    finally:
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(old)
        with open(os.path.join(args.out, "runs.json"), "w") as f:
            json.dump(runs, f)


# ---- report ----------------------------------------------------------------------------

HIVE_PROGS = ("xdp_from_under", "tc_from_task", "tc_from_underl")
# Frames that make a sample the bench's whatever its task (softirq work in a compiler's
# context is the bench's packets).
NET_FRAME = re.compile(
    r"net_rx_action|__netif_receive_skb|netif_receive|veth_|br_handle|br_forward|ip_rcv|"
    r"ip_forward|tcp_|__dev_queue_xmit|bpf_prog_|napi|xdp|skb_|sock_|inet_|ip_output|"
    r"ip_finish|vxlan|nf_hook|dev_hard_start"
)
BENCH_COMM = re.compile(r"^(iperf3|ksoftirqd|napi)")
CATEGORIES = [
    ("veth skb->xdp copy", None),  # decided by stack (skb_pp_cow_data)
    ("veth/XDP glue", re.compile(r"veth_|xdp|bpf_prog_run_generic|page_pool|bpf_dispatcher")),
    ("bridge", re.compile(r"^br_|^nbp_|fdb|^deliver_clone")),
    ("netfilter", re.compile(r"^nf_|^ipt_|^nft_|conntrack|^xt_|masq|^iptable")),
    ("kernel VXLAN", re.compile(r"vxlan|udp_tunnel|iptunnel|^udp|gro_cells")),
    ("TCP/socket", re.compile(r"^tcp|^sock_|^sk_|^inet_|datagram|^__tcp|lock_sock|release_sock")),
    ("copies/checksum", re.compile(r"copy|memcpy|memmove|rep_mov|csum|memset")),
    ("IP/FIB/neigh", re.compile(r"^ip_|^__ip_|fib|neigh|^dst_|^ipv4_|^rt_|^__mkroute|ip_route")),
    (
        "skb alloc/free",
        re.compile(
            r"kmem_cache|kfree|kmalloc|alloc_skb|skb_release|slab|page_frag|build_skb|"
            r"napi_alloc|skb_free|consume_skb|defer|free_unref|freelist|rmqueue|alloc_pages|"
            r"__free_pages|skb_clone|__copy_skb|skb_attempt|pskb_expand|skb_head|__page_cache|"
            r"put_page|folio"
        ),
    ),
    (
        "dev xmit/GSO/GRO",
        re.compile(r"dev_queue_xmit|dev_hard_start|validate_xmit|gso|segment|sch_|qdisc|gro|netif_"),
    ),
    (
        "scheduler/softirq/syscall",
        re.compile(
            r"softirq|net_rx_action|schedule|pick_next|enqueue|dequeue|update_curr|spin|"
            r"queued|irq|finish_task|wake|syscall|entry_|process_backlog|napi|switch|ttwu|"
            r"select_task|rcu|hrtimer|tick|clock|timer|futex|poll|epoll|cpuidle|sched|"
            r"account|native_|x86_|pvclock|apic|restore|vfs_|fsnotify|fdget|__fget|ksys_"
        ),
    ),
]


def classify(comm, frames):
    """frames: [(sym, dso)] leaf first. Returns a category, or None (not the bench's)."""
    syms = [s for s, _ in frames]
    for s in syms:
        if s.startswith("bpf_prog_"):
            for p in HIVE_PROGS:
                if p in s:
                    return "hive: " + p
            if "xdp_floor" in s:
                return "bridge"
    bench = BENCH_COMM.match(comm) or any(NET_FRAME.search(s) for s in syms)
    if not bench:
        return None
    if any(s.startswith("skb_pp_cow_data") or s.startswith("skb_cow_data_for_xdp") for s in syms):
        return "veth skb->xdp copy"
    leaf, dso = frames[0] if frames else ("?", "?")
    if "kernel" not in dso and "bpf" not in dso:
        return "user space"
    for name, rx in CATEGORIES[1:]:
        if rx.search(leaf):
            return name
    return "other kernel"


def perf_samples(path):
    """Yields (comm, cpu, frames) per sample of a perf.data file."""
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,cpu,ip,sym,dso"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    comm, cpu, frames = None, None, []
    for line in out.splitlines():
        if not line.strip():
            if comm is not None:
                yield comm, cpu, frames
            comm, frames = None, []
        elif line.startswith("\t"):
            _, _, rest = line.strip().partition(" ")
            sym, _, dso = rest.rpartition(" (")
            frames.append((re.sub(r"\+0x[0-9a-f]+$", "", sym), dso.rstrip(")")))
        else:
            m = re.match(r"^\s*(.*?)\s+\[(\d+)\]", line)
            comm, cpu = (m.group(1), int(m.group(2))) if m else (line.strip(), -1)
            frames = []
    if comm is not None:
        yield comm, cpu, frames


def bench_labels(log):
    rx = re.compile(r"^\s+(\S+)\s+upload\s+([\d.]+) Gbit/s\s+(\d+) retransmits")
    labels = []
    for line in open(log, encoding="utf-8", errors="replace"):
        m = rx.match(line)
        if m:
            labels.append((m.group(1), float(m.group(2)), int(m.group(3))))
    return labels


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def report(args):
    runs = json.load(open(os.path.join(args.out, "runs.json")))
    labels = bench_labels(args.log)
    if len(labels) != len(runs):
        print(f"warning: {len(runs)} runs watched, {len(labels)} upload lines", file=sys.stderr)
    per_path = defaultdict(list)
    for run, (path, gbit, retr) in zip(runs, labels):
        b, a = run["before"], run["after"]
        c0, c1 = b["netdev"]["client"].get("eth0"), a["netdev"]["client"].get("eth0")
        segments = c1["tx_packets"] - c0["tx_packets"]
        gbytes = (c1["tx_bytes"] - c0["tx_bytes"]) / 1e9
        progs = {}
        where_of = dict(run["where"])
        # `bpftool net` here does not list tcx links: a node's tc programs are loaded with
        # it, just before its xdp_from_underlay, so they take the node of the next XDP id.
        xdp_ids = sorted(
            (int(i), w) for i, w in where_of.items() if a["progs"].get(i, {}).get("name") == "xdp_from_underlay"
        )
        for i, p in a["progs"].items():
            if p["name"].startswith("tc_from_") and i not in where_of:
                node = next((w for x, w in xdp_ids if 0 < x - int(i) < 16), None)
                if node is not None:
                    where_of[i] = node.split(":")[0] + ":tc"
        for pid, where in where_of.items():
            p0, p1 = b["progs"].get(pid), a["progs"].get(pid)
            if not p0 or not p1:
                continue
            cnt = p1["run_cnt"] - p0["run_cnt"]
            ns = p1["run_time_ns"] - p0["run_time_ns"]
            key = f"{p1['name']}@{where}"
            progs[key] = {
                "runs_per_segment": cnt / segments if segments else 0,
                "ns_per_run": ns / cnt if cnt else 0,
                "ns_per_segment": ns / segments if segments else 0,
            }
        cats = defaultdict(int)
        per_cpu = defaultdict(lambda: defaultdict(int))
        total = other = idle = 0
        if run.get("perf") and os.path.exists(run["perf"]):
            for comm, cpu, frames in perf_samples(run["perf"]):
                total += 1
                c = classify(comm, frames)
                if c is None:
                    other += 1
                    idle += comm.startswith("swapper")
                else:
                    cats[c] += 1
                    per_cpu[cpu][c] += 1
        # ns of CPU per segment: samples / 499 Hz over the segments of the window.
        ns_per_seg = {k: v / 499 * 1e9 / segments for k, v in cats.items()} if segments else {}
        # The CPU that did most of the bench's work: a single stream's sender, whose
        # softirq carries every hop up to the receiver's socket, is its bottleneck.
        busiest = max(per_cpu.values(), key=lambda c: sum(c.values()), default={})
        busiest_ns = {k: v / 499 * 1e9 / segments for k, v in busiest.items()} if segments else {}
        per_path[path].append(
            {
                "gbit_per_s": gbit,
                "retransmits": retr,
                "seconds": run["seconds"],
                "segments": segments,
                "gbytes": gbytes,
                "bytes_per_segment": gbytes * 1e9 / segments if segments else 0,
                "samples": total,
                "neighbour_samples": other - idle,
                "idle_samples": idle,
                "cpu_ns_per_segment": ns_per_seg,
                "bench_cpu_ns_per_segment": sum(ns_per_seg.values()),
                "busiest_cpu_ns_per_segment": busiest_ns,
                "busiest_cpu_share": sum(busiest.values()) / (total / max(len(per_cpu), 1))
                if total
                else 0,
                "programs": progs,
            }
        )
    json.dump(per_path, open(os.path.join(args.out, "report.json"), "w"), indent=1)
    for path, rs in per_path.items():
        print(f"== {path}: {len(rs)} runs")
        print(
            "  Gbit/s "
            + " ".join(f"{r['gbit_per_s']:.2f}" for r in rs)
            + " | segments/s "
            + " ".join(f"{r['segments'] / r['seconds'] / 1e3:.0f}k" for r in rs)
            + " | B/seg "
            + " ".join(f"{r['bytes_per_segment']:.0f}" for r in rs)
        )
        cats = sorted({c for r in rs for c in r["cpu_ns_per_segment"]})
        prof = [r for r in rs if r["samples"]]
        if prof:
            print("  bench CPU ns/segment: " + " ".join(f"{r['bench_cpu_ns_per_segment']:.0f}" for r in prof)
                  + "  (bench, neighbours, idle share "
                  + " ".join(
                      f"{1 - (r['neighbour_samples'] + r['idle_samples']) / r['samples']:.2f}/"
                      f"{r['neighbour_samples'] / r['samples']:.2f}/{r['idle_samples'] / r['samples']:.2f}"
                      for r in prof
                  )
                  + ")")
            for c in cats:
                print(
                    f"    {c:<28} "
                    + " ".join(f"{r['cpu_ns_per_segment'].get(c, 0):7.0f}" for r in prof)
                    + "   busiest CPU: "
                    + " ".join(f"{r['busiest_cpu_ns_per_segment'].get(c, 0):7.0f}" for r in prof)
                )
            print(
                "    busiest CPU total            "
                + " ".join(f"{sum(r['busiest_cpu_ns_per_segment'].values()):7.0f}" for r in prof)
            )
        keys = sorted({k for r in rs for k in r["programs"]})
        for k in keys:
            vals = [r["programs"][k] for r in rs if k in r["programs"]]
            print(
                f"    prog {k:<55} runs/seg {median([v['runs_per_segment'] for v in vals]):.2f} "
                f"ns/run {median([v['ns_per_run'] for v in vals]):.0f} "
                f"({min(v['ns_per_run'] for v in vals):.0f}-{max(v['ns_per_run'] for v in vals):.0f}) "
                f"ns/seg {median([v['ns_per_segment'] for v in vals]):.0f}"
            )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("out")
    w.add_argument("--lab", default="dsrbulk")
    w.add_argument("--perf", action="store_true")
    w.add_argument("--max-seconds", type=float, default=3600)
    r = sub.add_parser("report")
    r.add_argument("out")
    r.add_argument("log")
    args = ap.parse_args()
    watch(args) if args.cmd == "watch" else report(args)


if __name__ == "__main__":
    main()
