"""CodeCarbon (PyPI) wrapped around a pare training run, beside pare's own ledger.

Usage: cost_codecarbon.py PARE OUT_DIR [pare train arguments...]
Runs `PARE train ... --out OUT_DIR/run` inside a CodeCarbon OfflineEmissionsTracker
(machine mode, world-average fallback intensity is not available offline, so the
country is given: CODECARBON_COUNTRY, default USA), then prints both energy figures,
both methods and both CO2e figures (pare's recomputed at CodeCarbon's intensity too).
"""
import json
import os
import subprocess
import sys
import time

from codecarbon import OfflineEmissionsTracker


def main():
    pare, out = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    os.makedirs(out, exist_ok=True)
    country = os.environ.get("CODECARBON_COUNTRY", "USA")
    tracker = OfflineEmissionsTracker(country_iso_code=country, output_dir=out, log_level="error",
                                      measure_power_secs=1, tracking_mode="machine", save_to_file=True)
    tracker.start()
    t0 = time.time()
    subprocess.run([pare, "train", *args, "--out", os.path.join(out, "run"), "--overwrite", "--quiet"], check=True)
    wall = time.time() - t0
    kg = tracker.stop()
    data = tracker.final_emissions_data
    cc_kwh = data.energy_consumed
    cc_cpu_kwh = data.cpu_energy
    cc_ram_kwh = data.ram_energy
    intensity = (kg * 1000 / cc_kwh) if cc_kwh > 0 else float("nan")
    end = None
    with open(os.path.join(out, "run", "log.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if j.get("event") == "end":
                end = j
    cost = end["cost"]
    pare_j = cost["joules"]
    pare_g_at_cc = pare_j / 3.6e6 * cost["pue"] * intensity
    rows = [
        ("pare ledger", pare_j, cost["energy"]["method"], cost["energy"]["basis"], cost["co2e_grams"],
         cost["grid_g_per_kwh"], pare_g_at_cc),
        ("CodeCarbon %s" % getattr(tracker, "_version", ""), cc_kwh * 3.6e6,
         "cpu %s, ram %s" % (getattr(data, "cpu_model", "?"), "estimate"),
         "CPU %.1f J + RAM %.1f J (CodeCarbon: cpu_power %.1f W, ram_power %.1f W)" % (
             cc_cpu_kwh * 3.6e6, cc_ram_kwh * 3.6e6, data.cpu_power, data.ram_power),
         kg * 1000, intensity, kg * 1000),
    ]
    print("wall seconds of the run (CodeCarbon's view): %.2f; pare's own: %.2f s, CPU %.2f s, %d threads"
          % (wall, cost["seconds"], cost["cpu_seconds"], cost["threads"]))
    print("ledger overhead: %.3f ms of the run's %.2f s, %.4f %% (its own clock, cost.ledger_seconds)"
          % (cost.get("ledger_seconds", 0) * 1e3, cost["seconds"], 100 * cost.get("ledger_seconds", 0) / cost["seconds"]))
    print("| tool | energy (J) | method | basis | CO2e (g) at its own intensity | intensity (g/kWh) | CO2e (g) at CodeCarbon's intensity |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %.1f | %s | %s | %.4f | %.0f | %.4f |" % r)


if __name__ == "__main__":
    main()
