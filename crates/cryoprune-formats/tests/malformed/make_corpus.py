"""Regenerates the malformed-input corpus. Each file is damaged in one way a user could meet;
expected.tsv says which reader must refuse it and a phrase its error must contain."""
import os, random, struct

HERE = os.path.dirname(os.path.abspath(__file__))
expected = []

def put(name, data, reader, phrase):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(HERE, name), mode) as f:
        f.write(data)
    expected.append((name, reader, phrase))

def mrc_header(nx=4, ny=4, nz=1, mode=2, nsymbt=0, stamp=b"DD\0\0", map_id=b"MAP "):
    h = bytearray(1024)
    struct.pack_into("<4i", h, 0, nx, ny, nz, mode)
    struct.pack_into("<3i", h, 28, nx, ny, nz)
    struct.pack_into("<i", h, 92, nsymbt)
    h[208:212] = map_id
    h[212:216] = stamp
    return bytes(h)

data16 = struct.pack("<16f", *range(16))
put("truncated_header.mrc", mrc_header()[:500], "mrc", "truncated MRC header")
put("truncated_data.mrc", mrc_header() + data16[:20], "mrc", "file is truncated")
put("mode_complex3.mrc", mrc_header(mode=3) + data16 * 2, "mrc", "complex")
put("mode_complex4.mrc", mrc_header(mode=4) + data16 * 4, "mrc", "complex")
put("mode_unknown_9.mrc", mrc_header(mode=9) + data16, "mrc", "unknown MRC mode 9")
put("mode_101_4bit.mrc", mrc_header(mode=101) + data16, "mrc", "unknown MRC mode 101")
put("nsymbt_past_end.mrc", mrc_header(nsymbt=1 << 20) + data16, "mrc", "past the end")
put("nsymbt_negative.mrc", mrc_header(nsymbt=-8) + data16, "mrc", "NSYMBT = -8")
put("zero_dimension.mrc", mrc_header(ny=0) + data16, "mrc", "NY = 0")
put("negative_dimension.mrc", mrc_header(nz=-2) + data16, "mrc", "NZ = -2")
put("empty.mrc", b"", "mrc", "empty file")
random.seed(17)
put("random_bytes.mrc", bytes(random.getrandbits(8) for _ in range(2048)), "mrc", "not an MRC file")
put("text_as_mrc.mrcs", b"this is a text file, not an image stack\n" * 40, "mrc", "not an MRC file")

put("empty.star", "", "star_picks", "no `data_` block")
put("no_data_block.star", "_rlnCoordinateX 10\n", "star", "expected a `data_` block")
put("row_missing_value.star", "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 20\n30\n", "star", "line 6: loop row has 1 values; expected 2")
put("row_extra_value.star", "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 20 30\n", "star", "line 5: loop row has 3 values; expected 2")
put("non_numeric_coordinate.star", "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 twenty\n", "star_picks", "line 5: _rlnCoordinateY is `twenty`")
put("unclosed_quote.star", "data_\nloop_\n_rlnMicrographName #1\n'mic one.mrc\n", "star", "never closed")
put("loop_without_columns.star", "data_\nloop_\n1 2 3\n", "star", "no column names")
put("no_coordinates.star", "data_optics\nloop_\n_rlnOpticsGroup #1\n1\n", "star_picks", "no loop with _rlnCoordinateX")
put("binary.star", bytes([0xff, 0xfe, 0x00, 0x41]) * 10, "star", "not UTF-8")
put("autopick_index.star", "data_coordinate_files\nloop_\n_rlnMicrographName #1\n_rlnMicrographCoordinates #2\nmic1.mrc AutoPick/mic1_autopick.star\n", "star_picks", "line 5: coordinate file `AutoPick/mic1_autopick.star` not found")

def npy(header, body=b""):
    h = header + " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + body

put("empty.cs", b"", "cs", "empty file")
put("random_bytes.cs", bytes(random.getrandbits(8) for _ in range(512)), "cs", "not a NumPy file")
put("no_location_fields.cs", npy("{'descr': [('uid', '<u8'), ('blob/idx', '<u4')], 'fortran_order': False, 'shape': (1,), }", bytes(12)), "cs_picks", "no `location/center_x_frac` field")
put("truncated_records.cs", npy("{'descr': [('uid', '<u8'), ('x', '<f4')], 'fortran_order': False, 'shape': (10,), }", bytes(30)), "cs", "file is truncated")
put("object_field.cs", npy("{'descr': [('uid', '<u8'), ('name', '|O')], 'fortran_order': False, 'shape': (1,), }", bytes(16)), "cs", "'name' has type '|O'")
put("bad_header_literal.cs", npy("{'descr': [('uid', '<u8'), 'fortran_order': False", bytes(8)), "cs", "cannot read header")
put("plain_array.cs", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", bytes(16)), "cs", "not a structured array")
put("fortran_order.cs", npy("{'descr': [('a', '<f4')], 'fortran_order': True, 'shape': (1,), }", bytes(4)), "cs", "Fortran-ordered")
put("header_length_past_end.cs", b"\x93NUMPY\x01\x00\xff\x7f{'descr'", "cs", "file ends before")
put("bad_micrograph_shape.cs", npy("{'descr': [('location/micrograph_path', '|S4'), ('location/micrograph_shape', '<u4', (2,)), ('location/center_x_frac', '<f4'), ('location/center_y_frac', '<f4')], 'fortran_order': False, 'shape': (1,), }", b"m001" + struct.pack("<2I2f", 0, 0, 0.5, 0.5)), "cs_picks", "record 1")

put("three_columns.box", "10 20 180 180\n30 40 180\n", "box", "line 2: row has 3 columns")
put("non_numeric.box", "10 20 180 180\nabc 40 180 180\n", "box", "line 2: x is `abc`")
put("negative_size.box", "10 20 -180 180\n", "box", "negative box size")
put("binary.box", bytes([0xc3, 0x28, 0xa0, 0xa1]) * 8, "box", "not UTF-8")
put("nan_coordinate.box", "NaN 20 180 180\n", "box", "x is `NaN`")
put("two_columns.cbox", "12 15\n", "cbox", "line 1: row has 2 columns")
put("cbox_without_cryolo_block.cbox", "data_global\n_cbox_format_version 1.0\n", "cbox", "no `data_cryolo` block")
put("cbox_missing_width.cbox", "data_cryolo\nloop_\n_CoordinateX #1\n_CoordinateY #2\n1 2\n", "cbox", "no `_Width` column")
put("topaz_no_header.txt", "mic1\t10\t20\n", "topaz", "has no `image_name` column")
put("topaz_short_row.txt", "image_name\tx_coord\ty_coord\nmic1\t10\n", "topaz", "line 2: row has 2 values; expected 3")
put("empty.txt", "", "topaz", "empty file")
put("csv_missing_y.csv", "micrograph,x,score\nm1,10,0.5\n", "csv", "no `y` column")
put("csv_non_numeric.csv", "micrograph,x,y\nm1,10,20\nm1,ten,20\n", "csv", "line 3: x is `ten`")
put("csv_short_row.csv", "micrograph,x,y\nm1,10\n", "csv", "line 2: row has 2 values")
put("empty.csv", "", "csv", "empty file")
put("not_a_png.png", b"\x89PNG\r\n\x1a\n" + bytes(40), "image", "cannot decode")
put("truncated.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image", "cannot decode")
put("not_a_tiff.tif", b"II*\x00" + bytes(12), "image", "cannot decode TIFF")
put("csv_semicolons.csv", "micrograph;x;y;label\nmic_001;10,5;20;particle\n", "csv",
    "separated by semicolons, not commas")
put("csv_tabs.csv", "micrograph\tx\ty\nmic_001\t10.5\t20\n", "csv", "separated by tabs, not commas")

with open(os.path.join(HERE, "expected.tsv"), "w") as f:
    f.write("file\treader\terror must contain\n")
    for row in expected:
        f.write("\t".join(row) + "\n")
print(len(expected), "malformed files")
