"""Results and table of scripts/bench-compare.sh.

  bench_compare.py enet DIR GEN_RC RELAY_RC     -> one result (JSON) from DIR's logs
  bench_compare.py sustenet DIR BENCH_RC UP_RC  -> the same for the Sustenet side
  bench_compare.py table DIR N...               -> the markdown table on stdout
  bench_compare.py smoke DIR N...               -> exit 1 unless both sides ran, exited 0
                                                   and delivered something, and the table parses
"""
import json
import os
import re
import sys

COLUMNS = ["N", "side", "machine busy", "delivered", "state latency p50 / p99",
           "echo RTT p99", "server CPU", "server µs per delivered record",
           "generator sent / target", "generator ÷ server CPU per message", "errors"]


def load(path):
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def enet(d, gen_rc, relay_rc):
    gen, cpu = load(f"{d}/gen.json"), load(f"{d}/cpu.json")
    relay = None
    with open(f"{d}/relay.log") as f:
        for line in f:
            if line.startswith("RELAY summary "):
                relay = json.loads(line[len("RELAY summary "):])
    server = cpu["server_cpu"]
    st, echo = gen["state"], gen["echo"]
    return {
        "side": "Godot ENet", "exit": [gen_rc, relay_rc], "machine_busy": cpu["machine_busy"],
        "delivery": st["delivery"], "delivered": st["delivered"],
        "p50": st["latency_us"]["p50"], "p99": st["latency_us"]["p99"],
        "echo_p99": echo["rtt_us"]["p99"],
        "server_cpu": server, "relay_positions_in": relay["positions_in"],
        "us_per_record": server * 1e6 / max(gen["msgs_in_per_s"], 1e-9),
        "sent_ratio": gen["msgs_out_per_s"] / gen["target_out_per_s"],
        "gen_over_server": cpu["generator_cpu"] / max(server, 1e-9),
        "errors": gen["disconnected"] + gen["malformed"] + echo["sent"] - echo["received"],
    }


def sustenet(d, bench_rc, up_rc):
    b, cpu = load(f"{d}/bench.json"), load(f"{d}/cpu.json")
    st = b["state"]
    return {
        "side": "Sustenet", "exit": [bench_rc, up_rc], "machine_busy": cpu["machine_busy"],
        "delivery": st["delivery"], "delivered": st["delivered"],
        "p50": st["latency_us"]["p50"], "p99": st["latency_us"]["p99"],
        "echo_p99": b["rtt_us"]["reliable"]["p99"],
        "server_cpu": cpu["server_cpu"],
        "us_per_record": cpu["server_cpu"] * 1e6 / max(b["msgs_in_per_s"], 1e-9),
        "sent_ratio": b["msgs_out_per_s"] / b["target_out_per_s"],
        "gen_over_server": cpu["generator_cpu"] / max(cpu["server_cpu"], 1e-9),
        "errors": b["errors"],
    }


def ms(us):
    return f"{us / 1000:.2f} ms" if us < 10_000 else f"{us / 1000:.0f} ms"


def row(n, r):
    if "skipped" in r:
        return [f"{n:,}", "Godot ENet", "—", "—", "—", "—", "—", "—", "—", "—", r["skipped"]]
    cpu = f"{100 * r['server_cpu']:.0f} %"
    return [f"{n:,}", r["side"], f"{100 * r['machine_busy']:.0f} %",
            f"{100 * (r['delivery'] or 0):.2f} %", f"{ms(r['p50'])} / {ms(r['p99'])}",
            ms(r["echo_p99"]), cpu, f"{r['us_per_record']:.2f}",
            f"{100 * r['sent_ratio']:.0f} %", f"{r['gen_over_server']:.2f}", f"{r['errors']}"]


def results(d, ns):
    for n in ns:
        for side in ("enet", "sustenet"):
            path = f"{d}/{side}-{n}/result.json"
            yield n, side, (load(path) if os.path.exists(path) and os.path.getsize(path) else None)


def table(d, ns):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for n, side, r in results(d, ns):
        cells = row(n, r) if r else [f"{n:,}", side, "failed"] + ["—"] * (len(COLUMNS) - 3)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def smoke(d, ns):
    ok = True
    for n, side, r in results(d, ns):
        if not r or r.get("exit") != [0, 0] or not r.get("delivered"):
            print(f"bench-compare smoke: {side} at N={n} did not run cleanly: {r}", file=sys.stderr)
            ok = False
    rows = [l for l in table(d, ns).splitlines()[2:] if re.match(r"^\| [\d,]+ \| ", l)]
    for l in rows:
        cells = [c.strip() for c in l.strip("|").split("|")]
        if len(cells) != len(COLUMNS) or not re.match(r"^\d+\.\d\d %$", cells[3]) or float(cells[3][:-2]) <= 0:
            print(f"bench-compare smoke: table row does not parse: {l}", file=sys.stderr)
            ok = False
    if len(rows) != 2 * len(ns):
        ok = False
    print("bench-compare smoke: " + ("both sides ran" if ok else "FAILED"), file=sys.stderr)
    return ok


def main(argv):
    mode, d = argv[1], argv[2]
    if mode in ("enet", "sustenet"):
        f = enet if mode == "enet" else sustenet
        print(json.dumps(f(d, int(argv[3]), int(argv[4]))))
    elif mode == "table":
        print(table(d, [int(n) for n in argv[3:]]))
    elif mode == "smoke":
        return 0 if smoke(d, [int(n) for n in argv[3:]]) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
