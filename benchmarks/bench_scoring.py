"""Fair scores: the scoring modes and the hold-out score on the demo and the fully sampled real sets.

For each dataset of :data:`benchmarks.harness.DATASETS` (the demo and the real head, phantom and GRE sets; with
``--defaults`` also the other fully sampled real Cartesian sets of :data:`benchmarks.bench_realdata_deep.REAL_SETS`:
DHE, body coil, 7 T, see :data:`DEFAULTS_SETS`; ``--datasets`` names any of them), a random fastMRI line mask at
R = 4 and 8 (seed 0) and the methods zero-filled, cg-sense, l1-wavelet and tv (the regularised ones at their
automatic weight, 40 iterations; ``--defaults``: every method at its defaults), this script records

- PSNR / SSIM / NMSE in each scoring mode of :mod:`workbench.scoring` ("fastmri", "object", "as-acquired"),
  written to ``results/score_modes.md`` with, per mode, whether each method ranks above zero-filled;
- on the real sets and the demo (:data:`HOLDOUT_SETS`), the k-space hold-out score (:mod:`workbench.holdout`: 4
  folds, each holding out 7 % of the measured lines off the fully sampled centre, seed 0), the true k-space NMSE
  it estimates (:func:`workbench.holdout.kspace_nmse`, against the fully sampled data) and, per scan, Kendall's tau
  between the hold-out ranking and the reference ranking over methods x accelerations (``results/holdout.md``),
  beside the taus of the earlier rules kept in the cache: ``previous`` (the same folds, the held-out relative
  error) and ``before`` (one split of 7 % of the single samples). A run whose chosen weight the hold-out's fold
  runs cannot take (outside the parameter's range) is listed as not validated and left out of its scan's tau.

Runs are cached in ``results/scoring_runs.json`` (``--fresh`` recomputes). CPU: the seven hold-out sets took 60 s
on one core (2026-12-06, ``--fresh``). Usage: ``python -m benchmarks.bench_scoring [--datasets demo,head] [--fresh]
[--redo gre] [--holdout-only]`` (``--holdout-only``: ``results/holdout.md`` alone); ``--defaults [--redo gre,dhe]``:
``results/score_modes_defaults.md`` (runs cached in ``results/scoring_runs_defaults.json``). A set whose file is
not in the real-data folder is skipped with a line in the log; coil maps are ESPIRiT's (the default) unless the
fully sampled centre is too small for its kernel (body coil at R = 8: 5 lines), where the ACS maps are used (what
the error message asks a user to choose; recorded as ``maps`` in each run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.harness import DATASETS, RESULTS_DIR, make_problem, open_dataset, realdata_dir

METHODS = ("zero-filled", "cg-sense", "l1-wavelet", "tv")
# automatic weight; iterations cut from 100 (30 per weight search solve) to 40 (15) so that the whole table runs
# on a shared 2-core CPU in under an hour (the ranking questions asked here do not hinge on the last dB)
FAST = {"lam": None, "n_iter": 40, "search_iter": 15}
AUTO = {"l1-wavelet": FAST, "tv": FAST}
ACCELERATIONS = (4, 8)
# --defaults and the hold-out: the demo and every fully sampled real Cartesian set (bench_realdata_deep.REAL_SETS,
# readout oversampling removed; the 7 T scan through its symmetric echo)
DEFAULTS_SETS = ("demo", "head", "phantom", "gre", "dhe", "bodycoil", "7t")
HOLDOUT_SETS = DEFAULTS_SETS  # the sets with a reference: the demo, the fully sampled real scans
RUNS = RESULTS_DIR / "scoring_runs.json"
HOLDOUT_NOTES = [  # results/holdout.md's notes: measured on these runs (2026-12-06) with /tmp scripts, not fitted
    "Why whole lines: a held-out single sample lies on a measured line, whose neighbours along the readout are "
    "measured, so every interpolating method predicts it far better than an unmeasured line, while zero filling's "
    "relative error is 1 anywhere (the one-sample column: head R=8 CG-SENSE 0.031 against a k-space NMSE of 0.100).",
    "Why the correlation (adopted): the previous rule moved the held-out lines' whole relative error onto the "
    "unmeasured lines. Held-out lines lie in wider gaps and, the fully sampled centre never being held out, far from "
    "where the unmeasured energy is (next to the centre), so a method puts other energy there: on the GRE phantom at "
    "R=4 CG-SENSE puts 0.95 of the data's energy on the held-out lines and 0.50 on the unmeasured ones (relative error "
    "1.66 held out, 1.18 on the unmeasured lines). The new score takes what the scored run puts on the unmeasured "
    "lines (P_u) and its residual on the measured ones as they are, and only the correlation rho from the held-out "
    "lines; same 4 fold runs, no extra solve. Tau against the true k-space NMSE (what it estimates, at the weights "
    "before a9feacb): demo 0.714 -> 0.857, head 0.929 -> 0.929, phantom 0.714 -> 0.786, GRE 0.571 -> 0.786.",
    "The automatic weight on 2-coil data (a9feacb), before -> after, the same rule, folds, masks and iteration counts "
    "(the earlier weights from the toolkit of a9feacb's parent): tau against the fastMRI NMSE (PSNR) GRE 0.643 -> "
    "0.786, body coil 0.643 -> 0.643, DHE 0.857 -> 0.929 (all 8 runs, since d29cc37; see below), 7 T 0.643 -> 0.643 and the phantom 0.786 -> 0.786 (one coil: weights unchanged), "
    "the head 0.929 -> 0.929 and the demo 0.857 -> 0.857 (weights unchanged to 1e-6; their rows reproduce the cached "
    "ones to 1e-6, all seven sets were run again). Weights (x scale) before -> after: GRE R=4 l1-wavelet 0.0033 -> "
    "0.0226, TV 0.0002 -> 0.0163, R=8 0.0052 -> 0.0559, 0.0019 -> 0.0944; body coil R=4 0.0024 -> 0.0182, 0.0005 -> "
    "0.0174, R=8 0.0073 -> 0.0676, 0.0023 -> 0.1097. On the GRE phantom TV at R=4 went from the worst run (16.10 dB, "
    "score 0.1970) to the best (21.58 dB, 0.0630) and the score follows it; the earlier R=4 miss zero-filled / "
    "l1-wavelet (1.2 dB) is gone (l1-wavelet 19.69 -> 19.80 dB, score 0.0927 -> 0.0785 against zero-filled's 0.0836): "
    "every R=4 pair and every pair across R is ranked as PSNR ranks it. The goal, tau >= 0.8, is met on the demo "
    "(0.857), the head (0.929) and DHE (0.929); not on the phantom (0.786), GRE (0.786), the body coil (0.643) "
    "nor 7 T (0.643). The true k-space NMSE ranks as PSNR at 0.857 / 1.000 / 1.000 / 1.000 / 1.000 / 0.857 / 0.786 "
    "(demo, head, phantom, GRE, DHE, body coil, 7 T): the ceiling of any k-space estimate, below 0.8 on 7 T.",
    "DHE's TV at this table's settings (40 iterations, 15 per weight search solve): the search found lam = 803.5 "
    "(R=4) and 620.2 (R=8) x scale, outside the parameter's range 1e-6..1 (at the defaults, 100 and 30 iterations, it "
    "finds 0.254 / 0.234; before a9feacb 0.0073 / 0.30). The hold-out's fold runs take the weight the run chose "
    "(`holdout.params_as_run`), and the parameter check refused it, as it would have in `recon --validate`: those two "
    "rows could not be validated (tau 1.000 over the other 6 runs). Since d29cc37 the automatic weight is kept inside "
    "the range (the bound, 1.0 here: TV 19.51 -> 19.76 dB at R=4, 16.68 -> 16.80 at R=8) and every DHE run is "
    "validated: tau 0.929, its one miss l1-wavelet / TV at R=8 (0.35 dB; k-space NMSE 0.1860 / 0.2055, which ranks "
    "it as PSNR does: a miss of the estimate).",
    "Misranked pairs where tau < 0.8 (dB apart in fastMRI PSNR; k-space NMSE of the two): GRE (3 of 28) all at R=8, "
    "where the four runs lie within 0.47 dB: zero-filled / CG-SENSE (0.26 dB; 0.2105 / 0.2067, 2 % apart), zero-filled "
    "/ l1-wavelet (0.47 dB; 0.2105 / 0.1834, 15 %), l1-wavelet / TV (0.07 dB; 0.1834 / 0.1880, 2 %). Phantom (3, "
    "unchanged): the R=8 pairs zero-filled / l1-wavelet (0.27 dB; 0.1452 / 0.1330, 9 %), CG-SENSE / l1-wavelet (0.30 "
    "dB, 9 %), l1-wavelet / TV (0.15 dB; 0.1330 / 0.1401, 5 %). Body coil (5): zero-filled / CG-SENSE at R=4 (0.19 dB; "
    "0.0954 / 0.0968, 1 %: the k-space NMSE ranks it against PSNR too) and at R=8 zero-filled against CG-SENSE (0.28 "
    "dB; 0.2189 / 0.2122, 3 %), l1-wavelet (0.45 dB; 0.1902, 15 %) and TV (0.19 dB; 0.2077, 5 %), CG-SENSE / TV (0.09 "
    "dB, 2 %, k-space against PSNR). 7 T (5): TV at R=4 against zero-filled (1.72 dB; 0.0112 / 0.0089, 26 %), CG-SENSE "
    "(1.82 dB, 27 %) and l1-wavelet (0.06 dB; 0.0078 / 0.0089, k-space against PSNR); TV at R=8 against zero-filled "
    "(0.06 dB) and CG-SENSE (0.10 dB), 1 % apart in k-space and ranked against PSNR by it. Elsewhere: demo l1-wavelet "
    "/ TV at R=4 (0.25 dB; k-space against PSNR) and zero-filled R=4 / TV R=8 (0.24 dB); head l1-wavelet / TV at R=4 "
    "(0.16 dB). Only the 7 T R=4 pairs with TV are >= 0.5 dB apart (2 of 20 such pairs there; none on the other sets).",
    "Why: the correlation rho measured on the held-out lines is not that of the unmeasured lines. With each run's "
    "correlation on the unmeasured lines themselves (an oracle from the fully sampled data, everything else of the "
    "score as it is) tau would be demo 0.857, head 1.000, phantom 1.000, GRE 1.000, DHE 1.000 (6 runs, before d29cc37), body coil "
    "0.857, 7 T 0.929; the true unmeasured energy instead of the profile, with the held-out rho, gives phantom 0.643, "
    "7 T 0.571, the others unchanged. Held-out against unmeasured rho: body coil R=8 l1-wavelet 0.06 / 0.44, CG-SENSE "
    "0.02 / 0.24, TV 0.03 / 0.28; GRE R=8 l1-wavelet 0.11 / 0.38, CG-SENSE 0.06 / 0.23; 7 T R=4 TV 0.15 / 0.45. On the "
    "2-coil sets at R=8, 15-16 lines are measured (5-6 of them the centre) and 4 are held out in all, at |ky| 18-48 "
    "(body coil) and 17-64 (GRE), while 83 % / 75 % of the unmeasured energy lies within 8 lines of the centre block, "
    "and so does 89-100 % of what CG-SENSE, l1-wavelet and TV predict right (Re<y_u, F_u S x>); on 7 T at R=4 the 20 "
    "held-out lines lie at |ky| 31-115, the unmeasured energy at a weighted mean |ky| of 27. So every run's rho is "
    "near 0 on the held-out lines and a run that puts energy on the unmeasured lines is charged for it, which ranks "
    "zero filling (nothing there) first at R=8 on both 2-coil sets; its own score there is 14 % (GRE) and 24 % (body "
    "coil) high (the profile overestimates the unmeasured energy 1.19 and 1.34 times), the other runs' 24-48 % high.",
    "Near-ties against the reference's own noise: the noise of the fully sampled reference on the unmeasured samples "
    "moves a pair's NMSE difference by sd = sqrt(2) sigma ||F S (x_a - x_b)|| / ||y||^2; every pair ranked against "
    "PSNR above differs in k-space NMSE by 9.4-388 sd (body coil zero-filled / CG-SENSE R=4: 9.4; GRE 20-149, phantom "
    "55-108, 7 T 22-138, head 210, demo 121-388), so none is a tie within that noise: they are small real differences "
    "(0.06-0.47 dB but 7 T's TV against zero-filled and CG-SENSE at R=4, 1.7-1.8 dB) that the estimate cannot resolve.",
    "At the plugins' defaults (100 iterations, 30 per search solve; the same masks and folds, `run_all(auto={})` in a "
    "/tmp script): demo 0.786, head 0.929, phantom 0.643, GRE 0.786, DHE 0.857 (8 runs: TV's weights 0.254 / 0.234 are "
    "validated; 1.000 over the other 6), body coil 0.643, 7 T 0.714. The four sets below 0.8 here stay below, and the "
    "demo falls below: zero-filled R=4 against TV R=8 (0.78 dB; k-space NMSE 0.1383 / 0.1042) and l1-wavelet R=8 (0.02 "
    "dB), l1-wavelet / TV at R=4 (0.10 dB); the head's miss becomes l1-wavelet / TV at R=8 (0.67 dB). Pairs this close "
    "change order with the iteration count.",
    "Tried on the same runs and folds before a9feacb (the GRE phantom at its earlier weights; tau vs PSNR, head / "
    "phantom / GRE; demo where run): the held-out explained fraction Re<y,Fx>/|y|^2 instead of rho 0.929 / 0.786 / "
    "0.571; it by distance to the nearest measured line 0.857 / 0.929 / 0.571; it isotonic in |ky| 0.643 / 1.000 / "
    "0.643 (extrapolating to the centre overshoots on the 8-coil head); rho of the signal part (|y|^2 minus the noise "
    "energy from problem.noise_std) 0.929 / 0.929 / 0.643 (demo 0.643 in an earlier run: it overshoots where most "
    "held-out energy is noise); per-line sum of sqrt(E_u P_u) 0.929 / 0.786 / 0.643; the true unmeasured energies "
    "instead of the profile 0.929 / 0.643 / 0.643 (the profile is not what limits it). Folds of the off-centre lines "
    "nearest the centre (alternating): relative error demo / head / phantom / GRE 0.786 / 0.929 / 0.929 / 0.714, "
    "correlation 0.786 / 0.929 / 0.929 / 0.643: better on the phantom, worse on the demo (its near lines overstate how "
    "well the far ones are predicted: CG-SENSE R=4 0.076 against 0.093). In an earlier run at the previous weights: 8 "
    "folds of 3.5 % (previous rule) phantom 0.714 -> 0.857, GRE 0.571 -> 0.643, twice the solves. Holding out the "
    "outermost lines of the fully sampled centre (their geometry is that of the unmeasured lines beside it; unmeasured "
    "lines beside a measured line carry 21-51 % of the unmeasured energy): phantom 0.929, but the coil maps were "
    "estimated with those lines (GRE R=8 l1-wavelet 0.078 predicted against 0.213) and ESPIRiT cannot re-estimate them "
    "from the GRE R=8 centre (6 lines) without them: dropped.",
    "DHE re-read (f0291df): its two channels are the forward and reverse half echoes of one coil, now merged into "
    "one coil; its runs were made again (`--redo dhe`): tau 1.000 in the fastMRI and object modes (0.964 as "
    "acquired), no misranked pair. The DHE figures above are of the earlier 2-channel reading.",
    "No rule was changed now: the candidates that move rho towards the unmeasured lines (by distance, isotonic in "
    "|ky|, the signal part, near-centre folds, the centre's outer lines, more folds) are those above.",
    "How much of tau is the folds' draw (2026-12-07, the same runs, folds and rule with other seeds, /tmp script): "
    "tau vs PSNR with fold seeds 0 / 1 / 2 / 3: demo 0.857 / 0.786 / 0.643 / 0.786, head 0.929 / 0.857 / 0.929 / "
    "0.929, phantom 0.786 / 0.929 / 1.000 / 1.000, GRE 0.786 / 0.643 / 0.786 / 0.786, DHE 1.000 / 1.000 / 0.929 / "
    "0.929, body coil 0.643 / 0.643 / 0.643 / 0.571, 7 T 0.643 / 0.786 / 0.643 / 0.786 (mean over the seven sets "
    "0.806 / 0.806 / 0.796 / 0.827). One pair of 28 is 0.071 of tau; the draw of the held-out lines moves a scan's "
    "tau by up to 0.21, so at 8 runs a scan above or below 0.8 is partly the seed's: the phantom and 7 T pass with "
    "some seeds, the body coil with none. More or larger folds did not help either (seed 0; demo / phantom / GRE / "
    "body coil / 7 T, head 0.929 and DHE 1.000 throughout): 8 folds of 3.5 % 0.857 / 0.857 / 0.786 / 0.571 / 0.643, "
    "8 of 7 % 0.714 / 1.000 / 0.786 / 0.571 / 0.643, 6 of 10 % 0.786 / 1.000 / 0.786 / 0.500 / 0.643 (mean 0.806 "
    "each, as 4 of 7 %).",
    "The error bar (2026-12-07): the score now carries its standard error over the folds (the jackknife: the "
    "estimate pooled without each fold in turn; `holdout_nmse_se`, shown as `±` in the app's table, the job "
    "details and `recon --validate`). Zero filling has none (no fold changes its estimate). Pairs at least 2 "
    "combined standard errors apart (`workbench.holdout.separated`) are ranked as PSNR ranks them in 144 of 147 "
    "(the column above; the misses GRE zero-filled / l1-wavelet at R=8 0.47 dB, body coil and 7 T R=8 pairs "
    "0.06-0.28 dB apart); with fold seeds 1 and 2 (/tmp script) 155 of 163 and 142 of 149: the 8 and 7 misses are "
    "again 2-coil and 7 T pairs at R=8 within 0.5 dB but one (7 T l1-wavelet / TV at R=4, 0.05 dB), whose "
    "estimates agree across folds and are biased alike (GRE l1-wavelet at R=8: 0.2660 +- 0.0005 for a k-space "
    "NMSE of 0.1834). So the error bar says when the draw of the lines decides a ranking (a quarter of the pairs, "
    "most on the demo: 12 of 28 are not separated there), not when the estimate is biased. Counting the "
    "pairs it does not separate as ties (Kendall's tau-b) gives, seed 0: demo 0.756, head 0.866, phantom 0.845, "
    "GRE 0.806, DHE 0.945, body coil 0.806, 7 T 0.784; seed 1 0.824 / 0.906 / 0.886 / 0.718 / 0.982 / 0.749 / "
    "0.694: 5 and 4 sets at 0.8 against 3 and 3 ranked plainly, but the demo falls (0.857 -> 0.756 at seed 0) "
    "and 7 T stays below with every seed. The score and its rule are unchanged; the tau above is the plain one.",
    "The centre's outer lines where no maps are estimated (2026-12-07, /tmp script, the same runs and rule, fold "
    "seeds 0-3): with one coil the maps are ones, so the leak that ruled the centre's outer lines out (maps "
    "estimated with them) is absent, and holding them out puts some held-out lines where the unmeasured energy is. "
    "With the k outermost centre lines on each side among the candidates, mean tau over the four seeds (k = 0, "
    "today's rule / k = 1 / k = 2): phantom 0.929 / 0.929 / 0.911, 7 T 0.714 / 0.821 / 0.786, DHE 0.964 / 0.875 / "
    "0.911; their sum 2.607 / 2.625 / 2.607. 7 T gains what DHE loses (its k = 1 seeds 0.786-0.929): no rule "
    "changed.",
    "Cost: the 4 fold runs as before (the scored run's image is the run itself; `holdout_score` without an image makes "
    "the scored run again). Non-line masks (2D) use single-sample folds with the same rule; non-Cartesian samplings "
    "keep the relative error.",
    "The l1-wavelet runs again with db2 (2026-12-07, BART's `dau2`, now the default; `wavelet_default.md`), the "
    "other runs, the folds and the rule unchanged. Tau against PSNR before -> after: demo 0.857 -> 0.786, head "
    "0.929 -> 1.000, phantom 0.786 -> 0.714, GRE 0.786 -> 0.857, DHE 1.000 -> 1.000, body coil 0.643 -> 0.571, "
    "7 T 0.643 -> 0.714 (mean 0.806 -> 0.806); at 0.8 or above: demo, head, DHE -> head, GRE, DHE. Each set moves "
    "by one pair (0.071), as it did between fold seeds: the figures in the notes above are of the db4 runs.",
]
HOLDOUT_RULE = "correlation"  # the scored run's own prediction energy, the held-out correlation (2026-12-06)


DEFAULTS_NOTE = (
    "Why (measured 2026-12-06). The automatic weight of l1-wavelet, TV and fused lasso is the generalised "
    "discrepancy rule of `workbench/toolkit.py`: the residual may exceed the unregularised floor by 3 % of the noise "
    "energy plus twice the floor's mismatch share m = max(0, 1 - M/P, 1 - 2 E_noise/floor) (M measured samples, P "
    "pixels the maps cover). On the head, the demo, the 1-coil phantom and the 7 T scan m is 0 or the floor is ~0, "
    "so their weights and scores are those of the previous rule (floor + 3 % of the noise energy) to the digit. On "
    "the 2-coil sets it was far too small: the floor is 0.27-0.46 of the noise energy on the GRE phantom (not "
    "the 2.8 times noted before) and 0.29-0.91 on the body-coil phantom, but with fewer samples than unknowns "
    "(m = 0.44-0.80) the PSNR-best residual lies at 1.4-4.7 times the floor; on the DHE phantom, read then as 2 "
    "coils, the floor was 390-560 times the noise energy: its two channels are the forward and reverse half echoes "
    "of one coil, now merged into one (f0291df; DHE rows of this table re-run). Before -> after (object / "
    "as-acquired PSNR): GRE R=4 TV 15.86 / 15.92 -> 22.01 / 23.21 (best weight on a grid 22.87 / 24.45), "
    "l1-wavelet 16.89 / 17.09 -> 19.03 / 20.25; GRE R=8 TV 12.72 / 13.29 -> 13.98 / 15.30; body coil R=4 TV "
    "16.79 / 17.23 -> 20.07 / 21.42 (DHE as 2 channels R=4 TV 7.02 / 8.60 -> 19.15 / 22.30). The weight search takes as many or "
    "fewer solves (3-4 after the floor on the 2-coil sets, where the previous rule took 4-6). What stays below "
    "zero-filled in a fair mode: l1-wavelet's object SSIM on GRE and body coil at R=8 (no weight of the grid "
    "3e-4..0.3 reaches zero-filled's there: best 0.320 against 0.330, 0.354 against 0.379); the 7 T scan at R=8 in "
    "the object mode and TV's "
    "as-acquired PSNR (one coil, 30 of 256 lines: the best weight ties zero-filled, object 22.08-22.09 against "
    "22.08, as acquired 21.74 against 21.74). l1-wavelet's rows were run again on 2026-12-07 with db2, the new "
    "default wavelet (BART's `dau2`; `wavelet_default.md`): on the 7 T scan at R=8 its as-acquired SSIM is now "
    "under zero-filled's too (0.629 against 0.630; db4 0.646), and the body coil's R=8 fastMRI SSIM above it. Body coil at R=8: ACS maps (5 centre lines, too few for ESPIRiT's "
    "kernel). CG-SENSE has a fixed Tikhonov weight (0.01), not the "
    "automatic one: on one coil it is zero filling (ties), on two coils it cannot unfold R = 4 or 8 (GRE R=4 below "
    "in both metrics, SSIM below on the other 2-coil rows; on the one-coil DHE 0.03-0.06 dB below), and on the demo at "
    "R = 8 it keeps residual aliasing and noise (SSIM 0.713 against 0.719 as acquired). The fastMRI mode puts "
    "CG-SENSE below zero-filled in SSIM on every multi-coil scan: the RSS reference's noise floor.")


def open_set(name: str, realdata: Path):
    """``(scan, slice index)`` of a set of :data:`DATASETS` or of :data:`benchmarks.bench_realdata_deep.REAL_SETS`
    (the fully sampled slice, readout oversampling removed, as an in-memory scan), None when its file is absent."""
    if name in DATASETS:
        return open_dataset(name, realdata)
    from benchmarks.bench_realdata_deep import REAL_SETS, full_kspace, variant_scan

    if name not in REAL_SETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DEFAULTS_SETS)}")
    k = full_kspace(REAL_SETS[name], realdata)
    return None if k is None else (variant_scan(k, "full"), 0)


def scoring_sets(names, realdata: Path, log=print):
    """``(name, scan, slice index)`` of each set of ``names`` whose file is available; the others are logged."""
    for name, opened in ((name, open_set(name, realdata)) for name in names):
        if opened is not None:
            yield (name, *opened)
        else:
            log(f"{name}: skipped (not found in {realdata})")


def problem_with_maps(scan, index: int, accel: int):
    """The benchmark problem (random line mask, seed 0) with its coil maps estimated: ESPIRiT's, or the ACS maps
    where the fully sampled centre is smaller than ESPIRiT's kernel. Returns ``(problem, maps method)``."""
    from workbench.errors import SamplingError

    problem, _ = make_problem(scan, index, "random", accel)
    if problem.n_coils == 1:
        return problem, "none"
    try:
        _ = problem.maps
    except SamplingError:
        problem.maps_method = "acs"
        _ = problem.maps
    return problem, problem.maps_method


def run_all(names, fresh: bool = False, log=print, auto: dict | None = None, runs: Path = RUNS,
            holdout: bool = True) -> list[dict]:
    """Score (and, with ``holdout``, validate) the runs of ``names``; ``auto``: each method's parameters
    (default :data:`AUTO`; ``{}`` = the plugins' defaults, what a user gets); cached in ``runs``."""
    from workbench.holdout import kspace_nmse
    from workbench.methods import ParamError, discover_methods, safe_run
    from workbench.problem import Problem
    from workbench.scoring import SCORE_MODES, score_result

    auto = AUTO if auto is None else auto
    done = [] if fresh or not runs.exists() else json.loads(runs.read_text())
    # a run of a hold-out set is scored and validated from one image: a record of an earlier rule is made again
    done = [r for r in done if not holdout or r["dataset"] not in HOLDOUT_SETS
            or (r.get("holdout_rule") == HOLDOUT_RULE and ("holdout_nmse_se" in r or "holdout_failed" in r))]
    have = {(r["dataset"], r["R"], r["method"]) for r in done}
    registry = discover_methods()
    realdata = realdata_dir()
    for name, scan, index in scoring_sets(names, realdata, log):
        for accel in ACCELERATIONS:
            if all((name, accel, m) in have for m in METHODS):
                continue
            problem, maps = problem_with_maps(scan, index, accel)
            full_y = Problem.from_scan(scan, index).y if holdout and name in HOLDOUT_SETS else None
            for m in METHODS:
                if (name, accel, m) in have:
                    continue
                method, params = registry.get(m), auto.get(m)
                t0 = time.perf_counter()
                result = safe_run(method, problem, params)
                rec = {"dataset": name, "R": accel, "method": m, "time_s": round(time.perf_counter() - t0, 2),
                       "maps": maps,
                       "lam": result.chosen.get("lam"), "lam_rule": result.chosen.get("lam_rule"),
                       "scores": {mode: score_result(problem, result, mode) for mode in SCORE_MODES}}
                done.append(rec)
                if holdout and name in HOLDOUT_SETS:
                    t0 = time.perf_counter()
                    try:
                        rec.update(validate_by_every_rule(method, problem, params, result))
                    except ParamError as exc:  # the chosen weight outside the parameter's range: not validated
                        rec["holdout_failed"] = str(exc)
                    rec["holdout_time_s"] = round(time.perf_counter() - t0, 2)
                    rec["holdout_rule"] = HOLDOUT_RULE
                    rec["kspace_nmse"] = kspace_nmse(problem, full_y, result.image,
                                                     (result.extras or {}).get("image_is"))
                runs.write_text(json.dumps(done, indent=1))
                log(f"{name} R={accel} {m}: {rec['time_s']} s, "
                    + ", ".join(f"{k} {v['psnr']:.2f}/{v['ssim']:.3f}" for k, v in rec["scores"].items())
                    + (f", hold-out NMSE {rec['holdout_nmse']:.4f} (error {rec['holdout_error']:.4f}, previous "
                       f"{rec['previous']['holdout_nmse']:.4f}, one-sample {rec['before']['holdout_nmse']:.4f}, "
                       f"k-space NMSE {rec['kspace_nmse']:.4f})" if "holdout_nmse" in rec else "")
                    + (f", not validated: {rec['holdout_failed']}" if "holdout_failed" in rec else ""))
    return done


def validate_by_every_rule(method, problem, params, result) -> dict:
    """The hold-out summary of ``result`` (the rule of :func:`workbench.holdout.holdout_score`: the method on each
    fold with the weight the run chose) and, from the same fold runs, the previous rule's score (``previous``:
    the held-out relative error times the unmeasured energy, plus the folds' mean residual on the measured
    samples) and the one before it (``before``: that on one split of 7 % of the single samples; one more run)."""
    from workbench.holdout import folds, params_as_run, pooled_summary, residuals, scored_part, split
    from workbench.methods import safe_run

    as_run = params_as_run(method, params, result.chosen)

    def parts_of(holdouts):
        runs = [safe_run(method, h.train, as_run) for h in holdouts]
        return [residuals(h, r.image, (r.extras or {}).get("image_is")) for h, r in zip(holdouts, runs)]

    line_folds = folds(problem)
    parts = parts_of(line_folds)
    out = pooled_summary(line_folds, parts, scored_part(problem, result.image, (result.extras or {}).get("image_is")))
    out["previous"] = {"holdout_nmse": relative_error_rule(problem, line_folds, parts)}
    one = [split(problem)]
    out["before"] = {"holdout_nmse": relative_error_rule(problem, one, parts_of(one))}
    return out


def relative_error_rule(problem, holdouts, parts) -> float:
    """The previous rule's estimate: ``(mean over folds of their residual on every measured sample + e E_u) /
    (E_m + E_u)``, ``e`` the pooled held-out relative error, ``E_u`` the estimated unmeasured energy (taken from
    the zero-filled score, which is ``E_u / (E_m + E_u)`` under every rule)."""
    from workbench.holdout import pooled_summary

    zero_filled = pooled_summary(holdouts, [(p[0], p[0], 0.0, 0.0) for p in parts], (0.0, 0.0))["holdout_nmse"]
    measured = float(problem.y.abs().pow(2).sum())
    unmeasured = zero_filled * measured / (1 - zero_filled)
    relative = sum(p[1] for p in parts) / sum(p[0] for p in parts)
    return (sum(p[1] + p[2] for p in parts) / len(parts) + relative * unmeasured) / (measured + unmeasured)


def mask_rows(names) -> list[dict]:
    """The object mask's rule on each dataset's reference: the share of the image it covers, its connected
    parts, the share of the reference's energy inside, the mean inside over the mean outside."""
    import numpy as np
    from scipy import ndimage

    from workbench.problem import Problem
    from workbench.scoring import reference_region

    rows = []
    for name in names:
        opened = open_set(name, realdata_dir())
        if opened is None:
            continue
        ref = Problem.from_scan(*opened).reference.numpy().astype(np.float64)
        m = reference_region(ref)
        rows.append({"dataset": name, "shape": "x".join(map(str, ref.shape)), "area": float(m.mean()),
                     "parts": int(ndimage.label(m)[1]), "energy": float((ref[m] ** 2).sum() / (ref**2).sum()),
                     "contrast": float(ref[m].mean() / ref[~m].mean())})
    return rows


def score_modes_markdown(records: list[dict], masks: list[dict] = (), why: bool = True) -> str:
    lines = ["# Scoring modes: do the reconstructions rank above zero-filled?", "",
             "Written by `python -m benchmarks.bench_scoring` (random line mask, seed 0; l1-wavelet and TV at their "
             "automatic weight; PSNR dB / SSIM). A mark `<` after a number: that method scores below zero-filled "
             "in that metric and mode.", ""]
    modes = ("fastmri", "object", "as-acquired")
    lines.append("| dataset | R | method | " + " | ".join(f"{m} PSNR / SSIM" for m in modes) + " |")
    lines.append("|---|---|---|" + "---|" * len(modes))
    below: list[str] = []
    for (ds, accel), group in _groups(records).items():
        zf = group.get("zero-filled")
        for m in METHODS:
            r = group.get(m)
            if r is None:
                continue
            cells = []
            for mode in modes:
                s, z = r["scores"][mode], zf["scores"][mode]
                mark_p = " <" if m != "zero-filled" and s["psnr"] <= z["psnr"] else ""
                mark_s = " <" if m != "zero-filled" and s["ssim"] <= z["ssim"] else ""
                cells.append(f"{s['psnr']:.2f}{mark_p} / {s['ssim']:.3f}{mark_s}")
                if (mark_p or mark_s) and mode != "fastmri":
                    below.append(f"{ds} R={accel} {m} ({mode}: PSNR {s['psnr']:.2f} vs {z['psnr']:.2f}, SSIM "
                                 f"{s['ssim']:.3f} vs {z['ssim']:.3f})")
            lines.append(f"| {ds} | {accel} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "Rows below zero-filled in the object or as-acquired mode: " + ("none." if not below else "")]
    lines += [f"- {b}" for b in below]
    lines += [] if not why else ["", "Why (measured 2026-12-06, the automatic weight of a9feacb, this table's 40 "
              "iterations): CG-SENSE's weight is fixed (0.01), not automatic. With one coil (the phantom, 7 T) it is "
              "zero filling with that Tikhonov weight: ties within 0.23 dB. With two coils on 128-160 lines (GRE, body "
              "coil) R = 4 and 8 cannot be unfolded and it amplifies noise: below in SSIM. On DHE, whose two channels "
              "do not behave as two coils (design.md), every SENSE method is below (CG-SENSE 7-8 dB, l1-wavelet and TV "
              "0.3-2.4 dB in the object mode). On the demo at R = 8 (12 coils, 10 centre lines of 256) CG-SENSE keeps "
              "residual aliasing and noise (SSIM 0.713 against 0.719 as acquired). l1-wavelet and TV: below only on "
              "DHE, on 7 T at R = 8 (one coil: 0.04 dB under zero-filled in the object mode, where their best weight "
              "only ties it) and l1-wavelet's object-mode SSIM on GRE at R = 8 (0.295 against 0.330; no weight "
              "reaches it). Of the 42 method rows, 24 rank above zero-filled in PSNR and SSIM in both fair modes; of "
              "the 28 l1-wavelet and TV rows, 21."]
    if masks:
        lines += ["", "## The object mask on each reference", "",
                  "`workbench.scoring.object_mask`: Otsu's threshold of the reference smoothed by a Gaussian (1.5 px), "
                  "opened (3x3), parts under a tenth of the largest dropped, holes filled; derived once per reference.",
                  "", "| dataset | reference | area share | parts | energy inside | mean inside / outside |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {m['dataset']} | {m['shape']} | {m['area']:.2f} | {m['parts']} | {m['energy']:.3f} | "
                  f"{m['contrast']:.1f} |" for m in masks]
    return "\n".join(lines) + "\n"


def _groups(records: list[dict]) -> dict:
    out: dict = {}
    for r in records:
        out.setdefault((r["dataset"], r["R"]), {})[r["method"]] = r
    return out


def holdout_markdown(records: list[dict], notes: list[str] = ()) -> str:
    from scipy.stats import kendalltau

    lines = ["# Hold-out validation against the reference ranking", "",
             "Written by `python -m benchmarks.bench_scoring --holdout-only --datasets "
             f"{','.join(HOLDOUT_SETS)}` (random line mask, seed 0; l1-wavelet and TV at their automatic weight, "
             "40 iterations, 15 per weight search solve; the scored runs are cached in "
             "`results/scoring_runs.json`, and a run's hold-out score is recomputed when the rule changes). The "
             "score (`workbench.holdout.holdout_score`, the rule of `recon --validate` and the app's Validate): each "
             "method runs again on 4 folds, each holding out 7 % of the measured lines off the fully sampled centre "
             "(disjoint, seed 0); `error`: the pooled `||y_h - P_h F S x||^2 / ||y_h||^2` on the held-out lines; "
             "`rho`: their pooled correlation with the prediction; `hold-out NMSE`: the scan's k-space NMSE it "
             "predicts for the scored run's image x0, `(r_m + E_u + P_u - 2 rho sqrt(E_u P_u)) / (E_m + E_u)` (r_m "
             "its residual on the measured lines and P_u the energy it puts on the unmeasured ones, both exact; E_u "
             "the unmeasured lines' energy interpolated from the measured lines' profile). `previous`: the rule "
             "before (the same folds; the held-out relative error times E_u, plus the folds' residual on the "
             "measured lines); `one-sample`: the rule before that (one split of 7 % of the single samples off the "
             "centre). `k-space NMSE`: what the score estimates, `||y - F S x0||^2 / ||y||^2` against the fully "
             "sampled data (`workbench.holdout.kspace_nmse`). Kendall's tau (tau-b) between a score and the "
             "reference's figures over methods x accelerations (4 x 2 = 8 items, 28 pairs; fewer where a run could "
             "not be validated) per scan: NMSE (= the PSNR ranking) and 1 - SSIM in each scoring mode. Goal: tau "
             ">= 0.8 against PSNR. `±`: the hold-out NMSE's standard error over the folds (the jackknife, "
             "`workbench.holdout.jackknife_se`; what the app and `--validate` show beside it); `separated`: the "
             "pairs whose hold-out NMSEs are at least 2 combined standard errors apart "
             "(`workbench.holdout.separated`), and how many of those it ranks against PSNR.",
             "", "| dataset | R | method | hold-out NMSE | previous | one-sample | k-space NMSE | error | rho | NMSE "
             "fastmri / as-acquired | PSNR fastmri / object / as-acquired | SSIM fastmri / object / as-acquired | "
             "hold-out runs (s: 4 folds + the one-sample split) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    taus = []
    modes = ("fastmri", "object", "as-acquired")
    fm = lambda r: r["scores"]["fastmri"]["nmse"]
    for ds in HOLDOUT_SETS:
        recs = [r for r in records if r["dataset"] == ds and "holdout_folds" in r]
        if not recs:
            continue
        for r in (r for r in records if r["dataset"] == ds and ("holdout_folds" in r or "holdout_failed" in r)):
            s = r["scores"]
            cell = lambda v: "" if v is None else f"{v:.4f}"
            if "holdout_failed" in r:  # 5 cells: the score's, the previous rules', the held-out error and rho
                held = (f"not validated (lam {r['lam']:.4g}): {r['holdout_failed']} | | | "
                        f"{cell(r.get('kspace_nmse'))} | | ")
            else:
                se = r.get("holdout_nmse_se")
                held = (f"{r['holdout_nmse']:.4f}{f' ± {se:.4f}' if se else ''} | "
                        f"{cell(r.get('previous', {}).get('holdout_nmse'))} | "
                        f"{cell(r.get('before', {}).get('holdout_nmse'))} | {cell(r.get('kspace_nmse'))} | "
                        f"{r['holdout_error']:.4f} | {r.get('holdout_correlation', float('nan')):.3f}")
            lines.append(f"| {ds} | {r['R']} | {r['method']} | {held} | "
                         f"{s['fastmri']['nmse']:.4f} / {s['as-acquired']['nmse']:.4f} | "
                         + " / ".join(f"{s[m]['psnr']:.2f}" for m in modes) + " | "
                         + " / ".join(f"{s[m]['ssim']:.3f}" for m in modes) + f" | {r.get('holdout_time_s', '')} |")
        h = [r["holdout_nmse"] for r in recs]
        row = {"dataset": ds, "n": len(recs), "folds": sorted({r["holdout_folds"] for r in recs}),
               "discordant": discordant_pairs(recs)}
        for mode in modes:
            row["nmse " + mode] = kendalltau(h, [r["scores"][mode]["nmse"] for r in recs])[0]
            row["ssim " + mode] = kendalltau(h, [1 - r["scores"][mode]["ssim"] for r in recs])[0]
        row["separated"], row["separated wrong"] = separated_pairs(recs)
        row["apart"] = pairs_apart(recs, 0.5)
        row["wrong apart"] = len(discordant_pairs(recs, min_db=0.5))
        for key, name in (("previous", "previous"), ("before", "before")):
            if all(key in r for r in recs):
                row[name] = kendalltau([r[key]["holdout_nmse"] for r in recs], [fm(r) for r in recs])[0]
                row[name + " wrong apart"] = len(discordant_pairs(recs, lambda r, k=key: r[k]["holdout_nmse"], 0.5))
        if all("kspace_nmse" in r for r in recs):
            row["kspace"] = kendalltau([r["kspace_nmse"] for r in recs], [fm(r) for r in recs])[0]
            row["vs kspace"] = kendalltau(h, [r["kspace_nmse"] for r in recs])[0]
        taus.append(row)
    lines += ["", "| scan | items | folds | tau vs PSNR (NMSE) fastmri / object / as-acquired | previous vs fastmri | "
                  "one-sample vs fastmri | k-space NMSE vs fastmri | hold-out vs k-space NMSE | pairs >= 0.5 dB "
                  "apart ranked wrongly: now / previous / one-sample | separated by the hold-out: pairs, ranked "
                  "wrongly | vs SSIM fastmri / object / as-acquired | pairs ranked against fastmri PSNR |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    num = lambda t, k: f"{t[k]:.3f}" if k in t else "not measured"
    for t in taus:
        lines.append(f"| {t['dataset']} | {t['n']} | {'/'.join(map(str, t['folds']))} | "
                     + " / ".join(f"{t['nmse ' + m]:.3f}" for m in modes) + " | "
                     + f"{num(t, 'previous')} | {num(t, 'before')} | {num(t, 'kspace')} | {num(t, 'vs kspace')} | "
                     + f"{t['wrong apart']} / {t.get('previous wrong apart', '-')} / {t.get('before wrong apart', '-')}"
                     + f" of {t['apart']} | {t['separated']} of {t['n'] * (t['n'] - 1) // 2}, "
                     + f"{t['separated wrong']} | " + " / ".join(f"{t['ssim ' + m]:.3f}" for m in modes) + " | "
                     + ("; ".join(t["discordant"]) or "none") + " |")
    lines += ["", "Notes (measured 2026-12-06 on these sets).", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def separated_pairs(recs: list[dict]) -> tuple[int | str, int | str]:
    """``(pairs the hold-out separates, of them ranked against the fastMRI NMSE)``: pairs whose hold-out NMSEs are
    :data:`workbench.holdout.SEPARATED` combined standard errors apart ("-" where a run has no standard error)."""
    from itertools import combinations

    from workbench.holdout import separated

    n = wrong = 0
    for a, b in combinations(recs, 2):
        apart = separated(a, b)
        if apart is None:
            return "-", "-"
        if apart:
            n += 1
            fa, fb = a["scores"]["fastmri"]["nmse"], b["scores"]["fastmri"]["nmse"]
            wrong += (a["holdout_nmse"] - b["holdout_nmse"]) * (fa - fb) < 0
    return n, wrong


def discordant_pairs(recs: list[dict], score=lambda r: r["holdout_nmse"], min_db: float = 0.0) -> list[str]:
    """The pairs of runs that ``score`` (default: the hold-out NMSE) ranks against the fastMRI NMSE (ties in
    either: not counted), among the pairs at least ``min_db`` apart in fastMRI PSNR."""
    out = []
    for i, a in enumerate(recs):
        for b in recs[i + 1:]:
            if abs(a["scores"]["fastmri"]["psnr"] - b["scores"]["fastmri"]["psnr"]) < min_db:
                continue
            d_ref = a["scores"]["fastmri"]["nmse"] - b["scores"]["fastmri"]["nmse"]
            d_hold = score(a) - score(b)
            if d_ref * d_hold < 0:
                out.append(f"{a['method']} R{a['R']} / {b['method']} R{b['R']}")
    return out


def pairs_apart(recs: list[dict], min_db: float) -> int:
    return sum(abs(a["scores"]["fastmri"]["psnr"] - b["scores"]["fastmri"]["psnr"]) >= min_db
               for i, a in enumerate(recs) for b in recs[i + 1:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="",
                   help=f"comma-separated (default: {','.join(DATASETS)}; with --defaults {','.join(DEFAULTS_SETS)})")
    p.add_argument("--redo", default="", help="comma-separated datasets to recompute (the others are reused)")
    p.add_argument("--fresh", action="store_true",
                   help="recompute every run (default: reuse results/scoring_runs.json)")
    p.add_argument("--holdout-only", action="store_true",
                   help="write results/holdout.md only (results/score_modes.md is left as it is)")
    p.add_argument("--defaults", action="store_true",
                   help="the scoring modes only, every method with its defaults (100 iterations, full weight "
                        "search): results/score_modes_defaults.md, runs cached in scoring_runs_defaults.json")
    args = p.parse_args(argv)
    names = [d for d in (args.datasets or ",".join(DEFAULTS_SETS if args.defaults else DATASETS)).split(",") if d]
    runs = RESULTS_DIR / "scoring_runs_defaults.json" if args.defaults else RUNS
    if args.redo and runs.exists():
        redo = set(args.redo.split(","))
        runs.write_text(json.dumps([r for r in json.loads(runs.read_text()) if r["dataset"] not in redo], indent=1))
    if args.defaults:
        records = run_all(names, args.fresh, auto={}, runs=runs, holdout=False)
        records = [r for r in records if r["dataset"] in names]
        text = score_modes_markdown(records, mask_rows(names), why=False).replace(
            "l1-wavelet and TV at their automatic weight", "every method with its defaults (automatic weight, "
            "100 iterations: what a user gets; `--defaults`)", 1)
        text = text.replace("\n## The object mask", "\n" + DEFAULTS_NOTE + "\n\n## The object mask", 1)
        Path(RESULTS_DIR / "score_modes_defaults.md").write_text(text)
        return 0
    torch.manual_seed(0)
    records = run_all(names, args.fresh)
    if not args.holdout_only:
        Path(RESULTS_DIR / "score_modes.md").write_text(score_modes_markdown(records, mask_rows(names)))
    Path(RESULTS_DIR / "holdout.md").write_text(holdout_markdown(records, HOLDOUT_NOTES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
