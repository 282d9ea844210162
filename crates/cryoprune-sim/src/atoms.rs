//! Atom positions from PDB and mmCIF files: enough to render a density, nothing more (no
//! residues, no chains, no alternate-location logic beyond keeping the first).

use std::path::Path;

use crate::volume::Atom;
use crate::{Error, Result};

/// Whether `path` names an atomic model (PDB or mmCIF) by its extension.
pub fn is_atomic_model(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["pdb", "ent", "cif"].contains(&e.to_ascii_lowercase().as_str()))
}

/// Atomic number of the element, for weighting; hydrogens are left out (cryo-EM models rarely
/// carry them and their scattering is small).
fn weight(element: &str) -> Option<f64> {
    Some(match element.trim().to_ascii_uppercase().as_str() {
        "H" | "D" => return None,
        "C" => 6.0,
        "N" => 7.0,
        "O" => 8.0,
        "P" => 15.0,
        "S" => 16.0,
        "MG" => 12.0,
        "ZN" => 30.0,
        "FE" => 26.0,
        "CA" => 20.0,
        "NA" => 11.0,
        "CL" => 17.0,
        "K" => 19.0,
        "MN" => 25.0,
        _ => 6.0,
    })
}

/// Parses PDB (`ATOM`/`HETATM` records) or mmCIF (`_atom_site` loop), chosen by content.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Atom>> {
    let atoms = if text.contains("_atom_site.") {
        parse_cif(text, path)?
    } else {
        parse_pdb(text, path)?
    };
    if atoms.is_empty() {
        return Err(Error::Input(format!(
            "{}: no atoms found (expected PDB ATOM/HETATM records or an mmCIF _atom_site loop)",
            path.display()
        )));
    }
    Ok(atoms)
}

fn parse_pdb(text: &str, path: &Path) -> Result<Vec<Atom>> {
    let mut atoms = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("ENDMDL") {
            break;
        }
        if !(line.starts_with("ATOM  ") || line.starts_with("HETATM")) {
            continue;
        }
        let field = |a: usize, b: usize| line.get(a..b.min(line.len())).unwrap_or("").trim();
        let altloc = field(16, 17);
        if !altloc.is_empty() && altloc != "A" {
            continue;
        }
        let coord = |a, b| {
            field(a, b).parse::<f64>().map_err(|_| {
                Error::Input(format!(
                    "{}: line {}: expected a coordinate in columns {}-{}, found `{}`",
                    path.display(),
                    i + 1,
                    a + 1,
                    b,
                    field(a, b)
                ))
            })
        };
        let pos = [coord(30, 38)?, coord(38, 46)?, coord(46, 54)?];
        // Element in columns 77-78; older files leave it out and put it first in the atom name.
        let mut element = field(76, 78).to_string();
        if element.is_empty() {
            element = field(12, 16)
                .chars()
                .find(|c| c.is_ascii_alphabetic())
                .map(String::from)
                .unwrap_or_default();
        }
        if let Some(weight) = weight(&element) {
            atoms.push(Atom { pos, weight });
        }
    }
    Ok(atoms)
}

fn parse_cif(text: &str, path: &Path) -> Result<Vec<Atom>> {
    let mut lines = text.lines().enumerate().peekable();
    let mut atoms = Vec::new();
    while let Some((_, line)) = lines.next() {
        if line.trim() != "loop_" {
            continue;
        }
        let mut columns = Vec::new();
        while let Some((_, l)) = lines.peek() {
            let l = l.trim();
            if l.starts_with('_') {
                columns.push(l.split_whitespace().next().unwrap_or("").to_string());
                lines.next();
            } else {
                break;
            }
        }
        if !columns.iter().any(|c| c.starts_with("_atom_site.")) {
            continue;
        }
        let col = |name: &str| columns.iter().position(|c| c == name);
        let (Some(x), Some(y), Some(z)) = (
            col("_atom_site.Cartn_x"),
            col("_atom_site.Cartn_y"),
            col("_atom_site.Cartn_z"),
        ) else {
            return Err(Error::Input(format!(
                "{}: the _atom_site loop has no Cartn_x/y/z columns",
                path.display()
            )));
        };
        let element = col("_atom_site.type_symbol");
        let model = col("_atom_site.pdbx_PDB_model_num");
        let mut first_model = None;
        while let Some((i, l)) = lines.peek() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with('_') || l == "loop_" {
                break;
            }
            let i = *i;
            let v: Vec<&str> = l.split_whitespace().collect();
            lines.next();
            if v.len() != columns.len() {
                return Err(Error::Input(format!(
                    "{}: line {}: {} values for {} _atom_site columns",
                    path.display(),
                    i + 1,
                    v.len(),
                    columns.len()
                )));
            }
            if let Some(m) = model {
                if *first_model.get_or_insert(v[m]) != v[m] {
                    continue;
                }
            }
            let num = |k: usize| {
                v[k].parse::<f64>().map_err(|_| {
                    Error::Input(format!(
                        "{}: line {}: `{}` is not a coordinate",
                        path.display(),
                        i + 1,
                        v[k]
                    ))
                })
            };
            let pos = [num(x)?, num(y)?, num(z)?];
            if let Some(weight) = weight(element.map_or("C", |e| v[e])) {
                atoms.push(Atom { pos, weight });
            }
        }
    }
    Ok(atoms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdb_records_give_positions_and_weights() {
        let pdb = "\
HEADER    TEST
ATOM      1  N   MET A   1      11.104   6.134  -6.504  1.00  0.00           N
ATOM      2  CA  MET A   1      11.639   6.071  -5.147  1.00  0.00           C
ATOM      3  H   MET A   1      11.000   6.000  -5.000  1.00  0.00           H
HETATM    4 ZN    ZN A 101       1.000   2.000   3.000  1.00  0.00          ZN
END
";
        let atoms = parse(pdb, Path::new("t.pdb")).unwrap();
        assert_eq!(atoms.len(), 3);
        assert_eq!(atoms[0].pos, [11.104, 6.134, -6.504]);
        assert_eq!(atoms[0].weight, 7.0);
        assert_eq!(atoms[2].weight, 30.0);
    }

    #[test]
    fn cif_atom_site_loop_is_read_for_the_first_model() {
        let cif = "\
data_test
loop_
_atom_site.group_PDB
_atom_site.type_symbol
_atom_site.Cartn_x
_atom_site.Cartn_y
_atom_site.Cartn_z
_atom_site.pdbx_PDB_model_num
ATOM N 1.0 2.0 3.0 1
ATOM S 4.0 5.0 6.0 1
ATOM C 9.0 9.0 9.0 2
#
";
        let atoms = parse(cif, Path::new("t.cif")).unwrap();
        assert_eq!(atoms.len(), 2);
        assert_eq!(atoms[1].pos, [4.0, 5.0, 6.0]);
        assert_eq!(atoms[1].weight, 16.0);
    }

    #[test]
    fn bad_models_are_errors_naming_the_line() {
        let pdb =
            "ATOM      1  N   MET A   1      11.1x4   6.134  -6.504  1.00  0.00           N\n";
        let e = parse(pdb, Path::new("bad.pdb")).unwrap_err().to_string();
        assert!(e.contains("bad.pdb") && e.contains("line 1"), "{e}");
        let e = parse("HEADER nothing\n", Path::new("empty.pdb"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no atoms"), "{e}");
    }
}
