"""Build ``src/earlyia/features/ia_template_ztf.json``: the SN Ia light-curve template of the
``template`` features.

The template is Hsiao et al. (2007)'s SN Ia spectral series (``hsiao-subsampled``, bundled with
sncosmo) seen through the ZTF P48 g and r passbands at redshift 0.06 (the middle of ZTF's SN Ia
distribution), as flux per rest-frame day from -20 to +60 days around B-band maximum, normalised to
a peak of 1 in r.

Needs (not dependencies of earlyia, only of this script): ``pip install sncosmo`` and the ZTF
passbands of the ``bayesn`` wheel: ``pip download --no-deps bayesn==0.4.0`` then ``unzip`` its
``bayesn/bayesn-filters/filters/ZTF``.

Usage:
    python scripts/make_ia_template.py --filters DIR_WITH_p48g.txt_AND_p48r.txt [--z 0.06] \\
        [--out PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--filters",
        required=True,
        help="folder with p48g.txt and p48r.txt (wavelength in Angstrom, throughput)",
    )
    ap.add_argument("--z", type=float, default=0.06)
    ap.add_argument("--step", type=float, default=0.25, help="rest-frame phase step (days)")
    ap.add_argument(
        "--out",
        default=str(
            Path(__file__).resolve().parents[1] / "src/earlyia/features/ia_template_ztf.json"
        ),
    )
    args = ap.parse_args()

    import sncosmo

    bands = {}
    for b in ("g", "r"):
        wave, thr = np.loadtxt(Path(args.filters) / f"p48{b}.txt").T
        bands[b] = sncosmo.Bandpass(wave, thr, name=f"earlyia-p48{b}")
    model = sncosmo.Model(source="hsiao-subsampled")
    model.set(z=args.z, t0=0.0, amplitude=1.0)
    phase = np.arange(-20.0, 60.0 + args.step / 2, args.step)
    flux = {
        b: model.bandflux(bp, phase * (1 + args.z), zp=27.5, zpsys="ab") for b, bp in bands.items()
    }
    norm = float(np.max(flux["r"]))
    doc = {
        "what": "SN Ia template: Hsiao et al. 2007 (sncosmo hsiao-subsampled) through ZTF P48 g "
        "and r",
        "redshift": args.z,
        "phase_start": float(phase[0]),
        "phase_step": float(args.step),
        "phase_unit": "rest-frame days from B-band maximum",
        "flux_unit": "relative (r-band peak = 1)",
        "bands": {b: [round(float(v) / norm, 7) for v in f] for b, f in flux.items()},
        "made_by": "scripts/make_ia_template.py",
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    peak = {b: float(phase[np.argmax(f)]) for b, f in flux.items()}
    colour = -2.5 * np.log10(np.max(flux["g"]) / np.max(flux["r"]))
    print(f"wrote {args.out}: peaks at phase {peak}, peak g-r {colour:.3f}")


if __name__ == "__main__":
    main()
