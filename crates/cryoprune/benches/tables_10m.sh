#!/usr/bin/env bash
# Peak memory and seconds of `convert`, `prune` and `merge` on a 10,000,000-row particle STAR
# and the same picks as a cryoSPARC .cs (10,000 micrographs of 1,000 picks, the size of a large
# project). The network is not what is measured: prune is given 2 of the micrographs (2,000
# picks classified; the other picks are read, planned, written as rejected and scored), and
# merge joins two shards whose journals hold random probabilities for every pick.
#
#   crates/cryoprune/benches/tables_10m.sh [OUT_DIR] [ROWS_PER_MICROGRAPH]
#
# Needs a release build (cargo build --release), GNU time (/usr/bin/time), python3, and about
# 8 GB of disk. Writes OUT_DIR/tables.csv.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
bin="$root/target/release/cryoprune"
out="${1:-tables_10m}"
per="${2:-1000}"
mkdir -p "$out"
cd "$out"

# The picks: RELION 3.1 particle STAR with an optics block, 7 columns.
python3 - "$per" <<'PY'
import os, random, struct, sys
per = int(sys.argv[1])
random.seed(1)
with open("picks.star", "w") as f:
    f.write("\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
            "_rlnMicrographPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n"
            "_rlnAmplitudeContrast #6\nopticsGroup1 1 1.0 300 2.7 0.1\n\n")
    f.write("\n# version 30001\n\ndata_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
            "_rlnClassNumber #3\n_rlnAnglePsi #4\n_rlnAutopickFigureOfMerit #5\n"
            "_rlnMicrographName #6\n_rlnOpticsGroup #7\n")
    for m in range(10000):
        name = f"Movies/mic_{m:05d}.mrc"
        f.write("".join(
            f"{random.uniform(50, 4000):.6f} {random.uniform(50, 4000):.6f} 0 -999.00000 "
            f"{random.uniform(-1, 3):.6f} {name} 1\n" for _ in range(per)))
# One 4096² int8 micrograph, linked under every name: the jobs read headers (and 2 images).
header = struct.pack("<3i i 3i 3i 3f 3f 3i 3f", 4096, 4096, 1, 0, 0, 0, 0, 4096, 4096, 1,
                     4096.0, 4096.0, 1.0, 90.0, 90.0, 90.0, 1, 2, 3, 0.0, 0.0, 0.0)
header += bytes(208 - len(header)) + b"MAP " + bytes([0x44, 0x44, 0, 0]) + bytes(1024 - 216)
with open("one.mrc", "wb") as f:
    f.write(header)
    f.write(os.urandom(4096 * 4096))
os.makedirs("Movies", exist_ok=True)
for m in range(10000):
    p = f"Movies/mic_{m:05d}.mrc"
    if not os.path.lexists(p):
        os.symlink(os.path.abspath("one.mrc"), p)
PY

# A small model to prune with (what it learned does not matter here).
"$bin" simulate --out sim --count 4 --size 384 --seed 5 --format csv --no-previews > /dev/null 2>&1
"$bin" train --micrographs 'sim/micrographs/*.mrc' --labels sim/truth.csv --box 48 --input-size 32 \
    --arch small --pretrained none --epochs 2 --val-fraction 0.3 --image-only --out model > /dev/null 2>&1

echo "job,input,rows,seconds,peak_rss_mib" > tables.csv
measure() { # NAME INPUT COMMAND...
    local name=$1 input=$2
    shift 2
    /usr/bin/time -f "%e %M" -o time.txt "$@" > "$name.log" 2>&1
    read -r secs kib < time.txt
    echo "$name,$input,$((per * 10000)),$secs,$((kib / 1024))" | tee -a tables.csv
}
two='Movies/mic_0000[01].mrc'
measure convert-star-star STAR "$bin" convert --in picks.star --to star --out converted.star
measure convert-star-cs STAR "$bin" convert --in picks.star --micrographs 'Movies/*.mrc' --to cs --out picks.cs
measure convert-cs-cs .cs "$bin" convert --in picks.cs --to cs --out converted.cs
measure convert-cs-star .cs "$bin" convert --in picks.cs --micrographs 'Movies/*.mrc' --to star --out from_cs.star
measure prune STAR "$bin" prune --model model --micrographs "$two" --picks picks.star --out pruned_star \
    --write-rejected --scores pruned_star.csv --prior 0.8
measure prune .cs "$bin" prune --model model --micrographs "$two" --picks picks.cs --out pruned_cs \
    --write-rejected --scores pruned_cs.csv --prior 0.8
# The same .cs as a cryoSPARC job folder: the locations in a passthrough beside a main file
# of the other fields, joined by uid when read (main records in reverse order).
python3 <<'PY'
import ast, os, struct
def read(path):
    with open(path, "rb") as f:
        data = f.read()
    major = data[6]
    n, start = (struct.unpack("<H", data[8:10])[0], 10) if major == 1 else (struct.unpack("<I", data[8:12])[0], 12)
    header = ast.literal_eval(data[start:start + n].decode("latin1"))
    fields, offset = [], 0
    for d in header["descr"]:
        size = int(d[1][2:]) * (d[2][0] if len(d) > 2 else 1)
        fields.append((d, offset, size))
        offset += size
    return fields, offset, header["shape"][0], memoryview(data)[start + n:]
def write(path, fields, itemsize, rows, body, order):
    descr = ", ".join(repr(d) for d, _, _ in fields)
    header = "{'descr': [%s], 'fortran_order': False, 'shape': (%d,), }" % (descr, rows)
    header += " " * ((64 - (len(header) + 13) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header.encode("latin1"))
        for r in order:
            rec = body[r * itemsize:(r + 1) * itemsize]
            f.write(b"".join(rec[o:o + s] for _, o, s in fields))
fields, itemsize, rows, body = read("picks.cs")
os.makedirs("P1/J42", exist_ok=True)
main = [f for f in fields if not f[0][0].startswith("location/")]
through = [f for f in fields if f[0][0] == "uid" or f[0][0].startswith("location/")]
write("P1/J42/extracted_particles.cs", main, itemsize, rows, body, range(rows - 1, -1, -1))
write("P1/J42/J42_passthrough_particles.cs", through, itemsize, rows, body, range(rows))
with open("P1/J42/job.json", "w") as f:
    f.write('{"uid": "J42", "output_results": ['
            '{"group_name": "particles", "type": "particle.blob", "passthrough": false, "metafiles": ["J42/extracted_particles.cs"]}, '
            '{"group_name": "particles", "type": "particle.location", "passthrough": true, "metafiles": ["J42/J42_passthrough_particles.cs"]}]}')
PY
measure prune "cryoSPARC job" "$bin" prune --model model --micrographs "$two" --picks P1/J42 --out pruned_job \
    --write-rejected --scores pruned_job.csv --prior 0.8
rm -rf converted.* from_cs.star pruned_* P1

# Two finished shards of `prune --shard I/2` over every micrograph: a real shard's record with
# its settings widened, and journals of random probabilities.
"$bin" prune --model model --micrographs "$two" --picks picks.star --out shard_template \
    --shard 0/2 --prior 0.8 > /dev/null 2>&1
python3 - "$per" <<'PY'
import json, os, random, sys
per = int(sys.argv[1])
random.seed(2)
template = json.load(open("shard_template/cryoprune_shard.json"))
mics = [f"Movies/mic_{m:05d}.mrc" for m in range(10000)]
for picks in ("star", "cs"):
    for i in range(2):
        d = f"shard_{picks}_{i}"
        os.makedirs(d, exist_ok=True)
        rec = json.loads(json.dumps(template))
        rec["shard"] = rec["config"]["shard"] = {"index": i, "count": 2}
        rec["config"]["micrographs"] = ["Movies/*.mrc"]
        rec["config"]["picks"] = [f"picks.{picks}"]
        rec["config"]["out"] = d
        json.dump(rec, open(f"{d}/cryoprune_shard.json", "w"))
        journal = f"{d}/cryoprune_shard_outcomes.jsonl"
        if picks == "cs":
            os.symlink(os.path.abspath(f"shard_star_{i}/cryoprune_shard_outcomes.jsonl"), journal)
            continue
        with open(journal, "w") as f:
            for m in mics[i::2]:
                rows = []
                for _ in range(per):
                    a, b = sorted((random.random(), random.random()))
                    rows.append(f"[{a:.7g},{b - a:.7g},{1 - b:.7g}]")
                f.write('{"micrograph":"%s","outcomes":[%s]}\n' % (m, ",".join(rows)))
PY
measure merge STAR "$bin" merge --in shard_star_0 shard_star_1 --out merged_star --scores merged_star.csv
measure merge .cs "$bin" merge --in shard_cs_0 shard_cs_1 --out merged_cs --scores merged_cs.csv
rm -rf merged_* shard_*
cat tables.csv
