"""Prune a cryoSPARC job's particle picks with cryoprune and bring the kept ones back into
cryoSPARC as an External job, with cryosparc-tools (pip install cryosparc-tools; its version
must match your cryoSPARC's). Not part of cryoprune: an example to adapt.

    python cryoprune_cryosparc.py export --project P3 --job J42 --out picks.cs
    cryoprune prune --model model/ --micrographs 'P3/J12/motioncorrected/*.mrc' \
        --picks picks.cs --out pruned/
    python cryoprune_cryosparc.py import --project P3 --workspace W1 --job J42 \
        --pruned pruned/picks.cs

Connection settings come from the environment: CRYOSPARC_LICENSE_ID, CRYOSPARC_HOST,
CRYOSPARC_BASE_PORT, CRYOSPARC_EMAIL, CRYOSPARC_PASSWORD.
"""

import argparse
import os

import numpy as np
from cryosparc.dataset import Dataset
from cryosparc.tools import CryoSPARC


def connect():
    return CryoSPARC(
        license=os.environ["CRYOSPARC_LICENSE_ID"],
        host=os.environ.get("CRYOSPARC_HOST", "localhost"),
        base_port=int(os.environ.get("CRYOSPARC_BASE_PORT", "39000")),
        email=os.environ["CRYOSPARC_EMAIL"],
        password=os.environ["CRYOSPARC_PASSWORD"],
    )


def export(args):
    """The picking (or extraction) job's particles as one .cs file that `cryoprune prune` reads:
    location/micrograph_path names each micrograph, location/center_*_frac the pick."""
    job = connect().find_project(args.project).find_job(args.job)
    particles = job.load_output(args.output)
    particles.save(args.out)
    print(f"{len(particles)} picks of {args.project} {args.job} written to {args.out}")


def import_(args):
    """The kept picks as the output of a new External job. Only the uids come from cryoprune's
    file: the rows are the source job's own, so every field cryoSPARC expects is there as it
    was, and the other fields follow by passthrough from the connected input."""
    project = connect().find_project(args.project)
    source = project.find_job(args.job).load_output(args.output)
    kept = Dataset.load(args.pruned)
    mask = np.isin(source["uid"], kept["uid"])
    job = project.create_external_job(args.workspace, title=args.title)
    job.connect("particles", args.job, args.output, slots=["location"])
    job.add_output("particle", "particles", slots=["location"], passthrough="particles")
    with job.run():
        job.save_output("particles", source.mask(mask))
    print(f"{int(mask.sum())} of {len(source)} picks kept in {job.uid}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write a job's particles to a .cs file")
    e.add_argument("--project", required=True)
    e.add_argument("--job", required=True)
    e.add_argument("--output", default="particles", help="the job's output group")
    e.add_argument("--out", required=True)
    e.set_defaults(run=export)
    i = sub.add_parser("import", help="make an External job of the kept picks")
    i.add_argument("--project", required=True)
    i.add_argument("--workspace", required=True)
    i.add_argument("--job", required=True, help="the job the picks were exported from")
    i.add_argument("--output", default="particles")
    i.add_argument("--pruned", required=True, help="cryoprune prune's output .cs")
    i.add_argument("--title", default="cryoprune: kept picks")
    i.set_defaults(run=import_)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
