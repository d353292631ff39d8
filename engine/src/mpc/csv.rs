//! CSV datasets: columns parsed into signed fixed-point integers, ready to be shared.
//!
//! A dataset is a CSV file with a header row. Each header cell is a column name, optionally
//! followed by `:type` where type is one of `int`, `dec`, `bool` or `cat`:
//!
//! | type | cells | encoding (16 fractional bits, so 1 is `65536`) |
//! | --- | --- | --- |
//! | `int` | signed integers `-12`, `7` | exact |
//! | `dec` | signed decimals `3.25`, `-0.1` | rounded to the nearest multiple of 2^-16 (error at most 2^-17) |
//! | `bool` | `true`/`false`, `1`/`0`, `yes`/`no` | 1 or 0, exact |
//! | `cat` | any label | one-hot: one column per distinct label, named `name=label` |
//!
//! Without a type the column is inferred: `int` if every cell is an integer, `dec` if every cell
//! is a number, `bool` if every cell is a boolean word, and an error otherwise (categories must be
//! asked for with `:cat`, so that a typo in a numeric column is never silently one-hot encoded).
//!
//! Every value of every field column is stored at scale 2^16 (see [`FRAC_BITS`]); the minimum and
//! maximum encoded value of every field column is recorded in the [`Schema`], which is part of the
//! dataset's metadata (covered by the receipts) and drives the planner's range analysis. Every
//! error names the row (1-based, the header being row 1) and the column.

use std::collections::BTreeSet;

use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{Signed, ToPrimitive, Zero};
use serde::{Deserialize, Serialize};

use crate::mpc::field::PrimeField;

/// Fractional bits of every stored value (scale 2^16).
pub const FRAC_BITS: u32 = 16;

/// Largest magnitude of an encoded stored value: `2^100` (so about `2^84` before scaling).
/// Values beyond it are refused at parse time; the planner's range analysis bounds the rest.
pub const MAX_ENCODED_BITS: u32 = 100;

/// Errors of CSV parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// The file has no header row.
    #[error("the csv has no header row")]
    NoHeader,
    /// A header cell is empty, or names an unknown type.
    #[error("row 1, column {column}: bad header cell {cell:?}: {reason}")]
    BadHeader {
        /// Column number, 1-based.
        column: usize,
        /// The header cell.
        cell: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two columns share a name.
    #[error("row 1, column {column}: duplicate column name {name:?}")]
    DuplicateColumn {
        /// Column number, 1-based.
        column: usize,
        /// The repeated name.
        name: String,
    },
    /// A data row has the wrong number of cells.
    #[error("row {row}: {got} cells, the header has {expected}")]
    RowLength {
        /// Row number, 1-based (the header is row 1).
        row: usize,
        /// Cells found.
        got: usize,
        /// Cells expected.
        expected: usize,
    },
    /// A quoted cell is not closed.
    #[error("row {row}: unterminated quote")]
    UnterminatedQuote {
        /// Row number, 1-based.
        row: usize,
    },
    /// A cell does not parse as the column's type.
    #[error("row {row}, column {column:?}: {value:?} is not {expected}")]
    BadValue {
        /// Row number, 1-based (the header is row 1).
        row: usize,
        /// Column name.
        column: String,
        /// The cell.
        value: String,
        /// What the column expects (`an integer`, `a decimal`, `a boolean`).
        expected: &'static str,
    },
    /// A value is too large for the fixed-point encoding.
    #[error("row {row}, column {column:?}: {value:?} is out of range (|value| must stay below 2^{bits} after scaling by 2^16)")]
    OutOfRange {
        /// Row number, 1-based.
        row: usize,
        /// Column name.
        column: String,
        /// The cell.
        value: String,
        /// [`MAX_ENCODED_BITS`].
        bits: u32,
    },
    /// The file has a header but no data rows.
    #[error("the csv has no data rows")]
    NoRows,
}

/// The type of a CSV column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum ColumnKind {
    /// Signed integers.
    Integer,
    /// Signed decimals, rounded to 16 fractional bits.
    Decimal,
    /// Booleans, stored as 0 or 1.
    Boolean,
    /// Labels, one-hot encoded: one field column per level, in sorted order.
    Category {
        /// The distinct labels, sorted.
        levels: Vec<String>,
    },
}

/// One column of the CSV as the owner wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The header name.
    pub name: String,
    /// Its type.
    pub kind: ColumnKind,
    /// Index of its first field column in [`Schema::fields`] (a category has one per level).
    pub first_field: usize,
}

/// One shared vector: a column, or one level of a category column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldColumn {
    /// `name` for plain columns, `name=label` for a category level.
    pub name: String,
    /// Smallest encoded value (at scale 2^16).
    pub min: i128,
    /// Largest encoded value (at scale 2^16).
    pub max: i128,
}

impl FieldColumn {
    /// `max(|min|, |max|)`: the worst-case magnitude of one encoded value.
    pub fn magnitude(&self) -> u128 {
        self.min.unsigned_abs().max(self.max.unsigned_abs())
    }
}

/// The public metadata of a dataset: columns, their types and ranges, and the row count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Number of data rows.
    pub rows: usize,
    /// The CSV columns, in file order.
    pub columns: Vec<Column>,
    /// The field columns (what is shared), in order.
    pub fields: Vec<FieldColumn>,
}

impl Schema {
    /// The CSV column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Index of the field column called `name` (`col` or `col=label`); a category column's bare
    /// name is not a field column.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        if let Some(c) = self.column(name) {
            return match c.kind {
                ColumnKind::Category { .. } => None,
                _ => Some(c.first_field),
            };
        }
        self.fields.iter().position(|f| f.name == name)
    }
}

/// A parsed dataset: its schema and the encoded values, one vector per field column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Public metadata.
    pub schema: Schema,
    /// `values[f][row]`: the encoded value (scale 2^16) of field column `f` at `row`.
    pub values: Vec<Vec<i128>>,
}

impl Dataset {
    /// The field columns as field elements (signed values map to `p - |v|`).
    pub fn to_field<F: PrimeField>(&self) -> Vec<Vec<F>> {
        self.values
            .iter()
            .map(|col| col.iter().map(|v| F::from_i128(*v)).collect())
            .collect()
    }

    /// Parses a CSV text.
    ///
    /// # Errors
    /// A [`CsvError`] naming the row and column of the first bad cell.
    pub fn parse(text: &str) -> Result<Self, CsvError> {
        parse(text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    Int,
    Dec,
    Bool,
    Cat,
    Infer,
}

/// Splits one CSV line into cells (RFC 4180 quotes, `""` inside quotes; cells are trimmed).
fn split_line(line: &str, row: usize) -> Result<Vec<String>, CsvError> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && cur.trim().is_empty() {
            cur.clear();
            quoted = true;
            was_quoted = true;
        } else if c == ',' {
            cells.push(finish_cell(&cur, was_quoted));
            cur.clear();
            was_quoted = false;
        } else {
            cur.push(c);
        }
    }
    if quoted {
        return Err(CsvError::UnterminatedQuote { row });
    }
    cells.push(finish_cell(&cur, was_quoted));
    Ok(cells)
}

fn finish_cell(cur: &str, was_quoted: bool) -> String {
    if was_quoted {
        cur.to_owned()
    } else {
        cur.trim().to_owned()
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn is_integer(s: &str) -> bool {
    let d = s.strip_prefix(['-', '+']).unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a signed decimal literal (`-12.5`, `+3`, `.25`, `4.`) into `(mantissa, exponent)` with
/// value `mantissa / 10^exponent`. No exponent notation.
pub(crate) fn parse_decimal(s: &str) -> Option<(BigInt, u32)> {
    let (neg, d) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match d.split_once('.') {
        Some((i, f)) => (i, f),
        None => (d, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 60 || int.len() > 60 {
        return None;
    }
    let digits = format!("{int}{frac}");
    let mut m: BigInt = if digits.is_empty() {
        BigInt::zero()
    } else {
        digits.parse().ok()?
    };
    if neg {
        m = -m;
    }
    Some((m, u32::try_from(frac.len()).ok()?))
}

/// `round(m / 10^e * 2^bits)`, rounding half away from zero.
pub(crate) fn decimal_to_fixed(m: &BigInt, e: u32, bits: u32) -> BigInt {
    let num = m << bits;
    let den = BigInt::from(10u32).pow(e);
    round_div(&num, &den)
}

/// `round(num / den)` for `den > 0`, half away from zero.
pub(crate) fn round_div(num: &BigInt, den: &BigInt) -> BigInt {
    let (q, r) = num.abs().div_rem(den);
    let q = if (r << 1u32) >= *den { q + 1 } else { q };
    if num.is_negative() {
        -q
    } else {
        q
    }
}

fn encode_cell(kind: Declared, cell: &str, row: usize, column: &str) -> Result<i128, CsvError> {
    let bad = |expected| CsvError::BadValue {
        row,
        column: column.to_owned(),
        value: cell.to_owned(),
        expected,
    };
    let big = match kind {
        Declared::Int => {
            if !is_integer(cell) {
                return Err(bad("an integer"));
            }
            let (m, _) = parse_decimal(cell).ok_or_else(|| bad("an integer"))?;
            m << FRAC_BITS
        }
        Declared::Dec => {
            let (m, e) = parse_decimal(cell).ok_or_else(|| bad("a decimal"))?;
            decimal_to_fixed(&m, e, FRAC_BITS)
        }
        Declared::Bool => {
            let b = parse_bool(cell).ok_or_else(|| bad("a boolean"))?;
            BigInt::from(u8::from(b)) << FRAC_BITS
        }
        Declared::Cat | Declared::Infer => unreachable!("categories are encoded by the caller"),
    };
    if big.bits() >= u64::from(MAX_ENCODED_BITS) {
        return Err(CsvError::OutOfRange {
            row,
            column: column.to_owned(),
            value: cell.to_owned(),
            bits: MAX_ENCODED_BITS,
        });
    }
    Ok(big
        .to_i128()
        .expect("a value below 2^100 in magnitude fits an i128"))
}

fn parse(text: &str) -> Result<Dataset, CsvError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or(CsvError::NoHeader)?;
    let header = split_line(header, 1)?;
    let mut names = Vec::with_capacity(header.len());
    let mut declared = Vec::with_capacity(header.len());
    let mut seen = BTreeSet::new();
    for (i, cell) in header.iter().enumerate() {
        let bad = |reason: &str| CsvError::BadHeader {
            column: i + 1,
            cell: cell.clone(),
            reason: reason.to_owned(),
        };
        let (name, ty) = match cell.rsplit_once(':') {
            Some((n, t)) => (n.trim(), Some(t.trim())),
            None => (cell.as_str(), None),
        };
        let ty = match ty {
            None => Declared::Infer,
            Some("int") => Declared::Int,
            Some("dec") => Declared::Dec,
            Some("bool") => Declared::Bool,
            Some("cat") => Declared::Cat,
            Some(_) => return Err(bad("type must be int, dec, bool or cat")),
        };
        if name.is_empty() {
            return Err(bad("empty column name"));
        }
        if name.contains('=') {
            return Err(bad("column names may not contain '='"));
        }
        if !seen.insert(name.to_owned()) {
            return Err(CsvError::DuplicateColumn {
                column: i + 1,
                name: name.to_owned(),
            });
        }
        names.push(name.to_owned());
        declared.push(ty);
    }
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    let mut row_numbers = Vec::new();
    for (row, line) in lines {
        let row_cells = split_line(line, row)?;
        if row_cells.len() != names.len() {
            return Err(CsvError::RowLength {
                row,
                got: row_cells.len(),
                expected: names.len(),
            });
        }
        for (col, cell) in row_cells.into_iter().enumerate() {
            cells[col].push(cell);
        }
        row_numbers.push(row);
    }
    if row_numbers.is_empty() {
        return Err(CsvError::NoRows);
    }
    let mut columns = Vec::new();
    let mut fields = Vec::new();
    let mut values = Vec::new();
    for ((name, ty), col_cells) in names.into_iter().zip(declared).zip(cells) {
        let ty = match ty {
            Declared::Infer => infer(&name, &col_cells, &row_numbers)?,
            t => t,
        };
        let first_field = fields.len();
        let kind = match ty {
            Declared::Cat => {
                let levels: BTreeSet<&str> = col_cells.iter().map(String::as_str).collect();
                let levels: Vec<String> = levels.into_iter().map(str::to_owned).collect();
                for level in &levels {
                    let one = 1i128 << FRAC_BITS;
                    let v: Vec<i128> = col_cells
                        .iter()
                        .map(|c| if c == level { one } else { 0 })
                        .collect();
                    push_field(&mut fields, &mut values, format!("{name}={level}"), v);
                }
                ColumnKind::Category { levels }
            }
            t => {
                let mut v = Vec::with_capacity(col_cells.len());
                for (cell, row) in col_cells.iter().zip(&row_numbers) {
                    v.push(encode_cell(t, cell, *row, &name)?);
                }
                push_field(&mut fields, &mut values, name.clone(), v);
                match t {
                    Declared::Int => ColumnKind::Integer,
                    Declared::Dec => ColumnKind::Decimal,
                    _ => ColumnKind::Boolean,
                }
            }
        };
        columns.push(Column {
            name,
            kind,
            first_field,
        });
    }
    Ok(Dataset {
        schema: Schema {
            rows: row_numbers.len(),
            columns,
            fields,
        },
        values,
    })
}

fn push_field(
    fields: &mut Vec<FieldColumn>,
    values: &mut Vec<Vec<i128>>,
    name: String,
    v: Vec<i128>,
) {
    let min = v.iter().copied().min().unwrap_or(0);
    let max = v.iter().copied().max().unwrap_or(0);
    fields.push(FieldColumn { name, min, max });
    values.push(v);
}

fn infer(name: &str, cells: &[String], rows: &[usize]) -> Result<Declared, CsvError> {
    if cells.iter().all(|c| is_integer(c)) {
        return Ok(Declared::Int);
    }
    if cells.iter().all(|c| parse_decimal(c).is_some()) {
        return Ok(Declared::Dec);
    }
    if cells.iter().all(|c| parse_bool(c).is_some()) {
        return Ok(Declared::Bool);
    }
    // Name the first cell that is not a number.
    let (cell, row) = cells
        .iter()
        .zip(rows)
        .find(|(c, _)| parse_decimal(c).is_none())
        .expect("some cell is not a decimal, or the column would be inferred as dec");
    Err(CsvError::BadValue {
        row: *row,
        column: name.to_owned(),
        value: cell.clone(),
        expected: "a number (declare the column `:cat` for labels, `:bool` for booleans)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, PrimeField};

    const ONE: i128 = 1 << 16;

    #[test]
    fn parses_every_kind() {
        let d = Dataset::parse(
            "age,income:dec,smoker:bool,color:cat\n30,1.5,yes,red\n-4,-0.25,no,\"blue\"\n7,2,1,red\n",
        )
        .unwrap();
        assert_eq!(d.schema.rows, 3);
        let names: Vec<_> = d.schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["age", "income", "smoker", "color=blue", "color=red"]
        );
        assert_eq!(d.values[0], [30 * ONE, -4 * ONE, 7 * ONE]);
        assert_eq!(d.values[1], [3 * ONE / 2, -ONE / 4, 2 * ONE]);
        assert_eq!(d.values[2], [ONE, 0, ONE]);
        assert_eq!(d.values[3], [0, ONE, 0]);
        assert_eq!(d.values[4], [ONE, 0, ONE]);
        assert_eq!(d.schema.fields[0].min, -4 * ONE);
        assert_eq!(d.schema.fields[0].max, 30 * ONE);
        assert_eq!(d.schema.column("age").unwrap().kind, ColumnKind::Integer);
        assert_eq!(d.schema.field_index("color=red"), Some(4));
        assert_eq!(d.schema.field_index("color"), None);
        let f: Vec<Vec<Mersenne127>> = d.to_field();
        assert_eq!(f[0][1], -Mersenne127::from_u64(4 << 16));
    }

    #[test]
    fn decimals_round_to_nearest() {
        let d = Dataset::parse("x\n0.1\n-0.1\n0.00000762939453125\n").unwrap();
        // 0.1 * 65536 = 6553.6 -> 6554; 2^-17 rounds away from zero to 1.
        assert_eq!(d.values[0], [6554, -6554, 1]);
        assert_eq!(d.schema.column("x").unwrap().kind, ColumnKind::Decimal);
    }

    #[test]
    fn errors_name_row_and_column() {
        let e = Dataset::parse("a:int,b\n1,2\n3,x\n").unwrap_err();
        assert_eq!(
            e,
            CsvError::BadValue {
                row: 3,
                column: "b".into(),
                value: "x".into(),
                expected: "a number (declare the column `:cat` for labels, `:bool` for booleans)"
            }
        );
        let e = Dataset::parse("a:int,b\n1,2\n1.5,3\n").unwrap_err();
        assert!(matches!(e, CsvError::BadValue { row: 3, ref column, .. } if column == "a"));
        assert!(e.to_string().contains("row 3"));
        let e = Dataset::parse("a,b\n1,2\n3\n").unwrap_err();
        assert_eq!(
            e,
            CsvError::RowLength {
                row: 3,
                got: 1,
                expected: 2
            }
        );
        let e = Dataset::parse("a,a\n1,2\n").unwrap_err();
        assert!(matches!(e, CsvError::DuplicateColumn { column: 2, .. }));
        let e = Dataset::parse("a:float\n1\n").unwrap_err();
        assert!(matches!(e, CsvError::BadHeader { column: 1, .. }));
        let e = Dataset::parse("a\n\"1\n").unwrap_err();
        assert_eq!(e, CsvError::UnterminatedQuote { row: 2 });
        let e = Dataset::parse("a\n").unwrap_err();
        assert_eq!(e, CsvError::NoRows);
        let e = Dataset::parse("").unwrap_err();
        assert_eq!(e, CsvError::NoHeader);
        let big = "9".repeat(40);
        let e = Dataset::parse(&format!("a\n{big}\n")).unwrap_err();
        assert!(matches!(e, CsvError::OutOfRange { row: 2, .. }));
        let e = Dataset::parse("b:bool\nmaybe\n").unwrap_err();
        assert!(matches!(
            e,
            CsvError::BadValue {
                expected: "a boolean",
                ..
            }
        ));
    }
}
