//! CSV datasets: columns parsed into signed fixed-point integers, ready to be shared.
//!
//! Real files have many columns, gaps and odd values; the reader is built for them.
//!
//! **Format.** UTF-8 (a leading byte-order mark is skipped; UTF-16 is refused), comma-separated,
//! one header row, any number of columns (at most [`MAX_COLUMNS`]), RFC 4180 quotes (`"a,b"`,
//! `""` inside quotes, line breaks inside quotes), `\n`, `\r\n` or `\r` line ends, blank lines
//! skipped (as pandas and R do; in a one-column file write a NULL as `NA`), spaces around
//! unquoted cells trimmed. Every data row must have exactly as many cells
//! as the header. Errors are one line and name the line (1-based, the header is line 1; a quoted
//! line break counts) and the column (1-based number and name).
//!
//! **Header.** Each header cell is a column name, optionally followed by `:type` and/or
//! `:MIN..MAX` (a declared range), e.g. `age:int:0..120`, `income:0..1e6`, `color:cat`:
//!
//! | type | cells | encoding (16 fractional bits, so 1 is `65536`) |
//! | --- | --- | --- |
//! | `int` | signed integers `-12`, `7` | exact |
//! | `dec` | signed decimals `3.25`, `-0.1`, `1.5e-3` | rounded to the nearest multiple of 2^-16 (error at most 2^-17) |
//! | `bool` | `true`/`false`, `1`/`0`, `yes`/`no` | 1 or 0, exact |
//! | `cat` | any label | one-hot: one column per distinct label, named `name=label` |
//!
//! Without a type the column is inferred from its present cells: `int` if every one is an
//! integer, `dec` if every one is a number, `bool` if every one is a boolean word. A value outside
//! a declared range is an error naming line and column. The [`Schema`] records the declared range
//! when there is one (so the public metadata reveals nothing about the values), otherwise the
//! observed minimum and maximum of the present values.
//!
//! **Missing values.** An empty cell, `""`, `NA` (R's `write.csv`), `NaN` (pandas, numpy),
//! `NULL`/`null` (SQL exports) and `N/A` are NULL ([`NULL_TOKENS`]; a quoted `"NA"` is the text
//! `NA`). Other markers (`-`, `?`, `.`) are text. A numeric column with at least one NULL is stored with a validity column
//! `present(name)` (1 present, 0 NULL; the value itself is 0 where NULL), stored right after it as
//! plain integers (scale 2^0). The planner uses it for SQL semantics: `sum`, `mean`, `var` skip
//! NULLs, `count()` counts rows, `count(col)` counts present values. In a category column a NULL
//! belongs to no level. A column without NULLs has no validity column.
//!
//! **Unusable columns.** A column whose cells are all NULL, or an undeclared column with text in
//! it, cannot be stored. [`Dataset::parse`] refuses the file and names every such column with the
//! reason, in one error, so the owner can fix them at once or pick the columns to store with
//! [`ReadOptions::columns`] (`--columns`); [`inspect`] reports every column's type, NULL count
//! and problem without encoding anything. A declared column (`x:int`) with a cell of the wrong
//! type is an error at that cell: the owner said what the column holds.
//!
//! Every value field column is stored at scale 2^16 ([`FRAC_BITS`]); encoding uses
//! [`crate::mpc::fixed`].
//!
//! ```
//! use btcmpc_engine::mpc::csv::{CsvError, Dataset, ReadOptions};
//!
//! let text = "age:int:0..120,income,notes\n30,1200.5,ok\n,NA,\n41,980,late\n";
//! let e = Dataset::parse(text).unwrap_err();
//! assert!(e.to_string().contains(r#"column 3 "notes" has text "ok" at line 2"#));
//! let only = ReadOptions { columns: Some(vec!["age".into(), "income".into()]) };
//! let d = Dataset::from_bytes_with(text.as_bytes(), &only)?;
//! let names: Vec<_> = d.schema.fields.iter().map(|f| f.name.as_str()).collect();
//! assert_eq!(names, ["age", "present(age)", "income", "present(income)"]);
//! assert_eq!(d.values[1], [1, 0, 1]); // row 2 is NULL in both columns
//! assert_eq!(d.values[0][1], 0);
//! # Ok::<(), CsvError>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;

use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive};
use serde::{Deserialize, Serialize};

use crate::mpc::field::PrimeField;
use crate::mpc::fixed::{Decimal, Scale, DEFAULT_FRAC_BITS};

/// Fractional bits of every stored value (scale 2^16), [`DEFAULT_FRAC_BITS`].
pub const FRAC_BITS: u32 = DEFAULT_FRAC_BITS;

/// Largest magnitude of an encoded stored value: `2^100` (so about `2^84` before scaling).
/// Values beyond it are refused at parse time; the planner's range analysis bounds the rest.
pub const MAX_ENCODED_BITS: u32 = 100;

/// Most columns a file may have.
pub const MAX_COLUMNS: usize = 4096;

/// Longest cell, in bytes.
pub const MAX_CELL_BYTES: usize = 1024;

/// Unquoted cells that mean NULL (after trimming spaces); a quoted empty cell is NULL too.
pub const NULL_TOKENS: [&str; 6] = ["", "NA", "NaN", "NULL", "null", "N/A"];

/// Longest cell text quoted in an error message (characters).
const SHOWN_CHARS: usize = 60;

/// Errors of CSV parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// The bytes are not UTF-8.
    #[error("line {line}: the file is not UTF-8 text")]
    NotUtf8 {
        /// Line of the first invalid byte.
        line: usize,
    },
    /// A UTF-16 byte-order mark.
    #[error("the file is UTF-16; save it as UTF-8")]
    Utf16,
    /// The file has no header row.
    #[error("the csv has no header row")]
    NoHeader,
    /// A header cell is empty, or names an unknown type.
    #[error("line 1, column {column}: bad header cell {cell:?}: {reason}")]
    BadHeader {
        /// Column number, 1-based.
        column: usize,
        /// The header cell.
        cell: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two columns share a name.
    #[error("line 1, column {column}: duplicate column name {name:?}")]
    DuplicateColumn {
        /// Column number, 1-based.
        column: usize,
        /// The repeated name.
        name: String,
    },
    /// A row has more than [`MAX_COLUMNS`] cells.
    #[error("line {line}: more than {max} columns")]
    TooManyColumns {
        /// Line of the row.
        line: usize,
        /// [`MAX_COLUMNS`].
        max: usize,
    },
    /// A data row has the wrong number of cells.
    #[error("line {line}: {got} cells, the header has {expected}")]
    RowLength {
        /// Line where the row starts.
        line: usize,
        /// Cells found.
        got: usize,
        /// Cells expected.
        expected: usize,
    },
    /// A quoted cell is not closed.
    #[error("line {line}, column {column}: unterminated quote")]
    UnterminatedQuote {
        /// Line of the opening quote.
        line: usize,
        /// Column number, 1-based.
        column: usize,
    },
    /// Text between a closing quote and the next comma.
    #[error("line {line}, column {column}: text after a closing quote")]
    TextAfterQuote {
        /// Line of the closing quote.
        line: usize,
        /// Column number, 1-based.
        column: usize,
    },
    /// A cell longer than [`MAX_CELL_BYTES`].
    #[error("line {line}, column {column}: cell longer than {max} bytes")]
    CellTooLong {
        /// Line of the cell.
        line: usize,
        /// Column number, 1-based.
        column: usize,
        /// [`MAX_CELL_BYTES`].
        max: usize,
    },
    /// A cell does not parse as the column's declared type.
    #[error("line {line}, column {column:?}: {value:?} is not {expected}")]
    BadValue {
        /// Line of the cell.
        line: usize,
        /// Column name.
        column: String,
        /// The cell (truncated to 60 characters).
        value: String,
        /// What the column expects (`an integer`, `a decimal`, `a boolean`).
        expected: &'static str,
    },
    /// A value is too large for the fixed-point encoding.
    #[error("line {line}, column {column:?}: {value:?} is out of range (|value| must stay below 2^{bits} after scaling by 2^16)")]
    OutOfRange {
        /// Line of the cell.
        line: usize,
        /// Column name.
        column: String,
        /// The cell (truncated).
        value: String,
        /// [`MAX_ENCODED_BITS`].
        bits: u32,
    },
    /// A value outside the column's declared range.
    #[error("line {line}, column {column:?}: {value} is outside the declared range {min}..{max}")]
    OutsideRange {
        /// Line of the cell.
        line: usize,
        /// Column name.
        column: String,
        /// The cell (truncated).
        value: String,
        /// Declared minimum, as written.
        min: String,
        /// Declared maximum, as written.
        max: String,
    },
    /// Columns that cannot be stored (entirely NULL, or text in an undeclared column).
    #[error("{}", unusable_message(.columns))]
    Unusable {
        /// Every unusable selected column, in file order.
        columns: Vec<UnusableColumn>,
    },
    /// [`ReadOptions::columns`] names a column the header does not have.
    #[error("no column named {name:?} in the header (a 0-based position is accepted too)")]
    UnknownColumn {
        /// The name asked for.
        name: String,
    },
    /// [`ReadOptions::columns`] selects nothing.
    #[error("no columns selected")]
    NoColumns,
    /// The file has a header but no data rows.
    #[error("the csv has no data rows")]
    NoRows,
}

fn unusable_message(columns: &[UnusableColumn]) -> String {
    let list: Vec<String> = columns.iter().map(ToString::to_string).collect();
    format!(
        "{} column{} cannot be stored: {}; fix {} or choose the columns to store (--columns)",
        columns.len(),
        if columns.len() == 1 { "" } else { "s" },
        list.join("; "),
        if columns.len() == 1 { "it" } else { "them" },
    )
}

/// A column that cannot be stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusableColumn {
    /// Column number, 1-based.
    pub column: usize,
    /// Column name.
    pub name: String,
    /// Why.
    pub reason: Unusable,
}

/// Why a column cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unusable {
    /// Every cell is NULL.
    AllNull,
    /// An undeclared column holds text: the first such cell.
    Text {
        /// Line of the cell.
        line: usize,
        /// The cell (truncated).
        value: String,
    },
    /// A category column with more distinct labels than [`MAX_CATEGORY_LEVELS`] (each label
    /// is a secret-shared 0/1 column).
    TooManyLevels {
        /// Distinct labels found.
        levels: usize,
    },
    /// A category label longer than [`MAX_LABEL_BYTES`] or holding a control character.
    BadLabel {
        /// Line of the cell.
        line: usize,
        /// The label (truncated).
        value: String,
    },
}

/// Most distinct labels of one category column (each is stored as a 0/1 column).
pub const MAX_CATEGORY_LEVELS: usize = 256;

/// Longest category label, bytes.
pub const MAX_LABEL_BYTES: usize = 64;

impl fmt::Display for UnusableColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Unusable::AllNull => write!(
                f,
                "column {} {:?} is entirely empty (NULL)",
                self.column, self.name
            ),
            Unusable::Text { line, value } => write!(
                f,
                "column {} {:?} has text {value:?} at line {line} (for labels, rename its header cell to `{}:cat`)",
                self.column, self.name, self.name
            ),
            Unusable::TooManyLevels { levels } => write!(
                f,
                "column {} {:?} has {levels} distinct labels, more than the {MAX_CATEGORY_LEVELS} a category column may have",
                self.column, self.name
            ),
            Unusable::BadLabel { line, value } => write!(
                f,
                "column {} {:?} has the label {value:?} at line {line}: labels are at most {MAX_LABEL_BYTES} bytes without control characters",
                self.column, self.name
            ),
        }
    }
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

/// `i128` as a JSON string (JSON numbers beyond 64 bits do not survive every reader); a number
/// is accepted when read.
mod i128_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(i64),
        }
        match Either::deserialize(d)? {
            Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Either::Number(n) => Ok(i128::from(n)),
        }
    }
}

/// One shared vector: a column, one level of a category column, or a validity column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldColumn {
    /// `name` for plain columns, `name=label` for a category level, `present(name)` for the
    /// validity column of a nullable column.
    pub name: String,
    /// Smallest encoded value (at the column's scale), over present values or as declared.
    #[serde(with = "i128_text")]
    pub min: i128,
    /// Largest encoded value (at the column's scale), over present values or as declared.
    #[serde(with = "i128_text")]
    pub max: i128,
    /// For a column with NULLs: the index of its validity column in [`Schema::fields`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<usize>,
    /// For a validity column: the index of the value column it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present_of: Option<usize>,
}

impl FieldColumn {
    /// `max(|min|, |max|)`: the worst-case magnitude of one encoded value.
    pub fn magnitude(&self) -> u128 {
        self.min.unsigned_abs().max(self.max.unsigned_abs())
    }

    /// The scale of the stored integers: 2^16 for values, 2^0 for validity columns.
    pub fn scale(&self) -> Scale {
        if self.present_of.is_some() {
            Scale::INTEGER
        } else {
            Scale::UNIT
        }
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
    /// The CSV columns' names, in order (what a grant's column scope indexes).
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// The CSV column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Index of the field column called `name` (`col` or `col=label`); a category column's bare
    /// name and validity columns are not addressable by name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        if let Some(c) = self.column(name) {
            return match c.kind {
                ColumnKind::Category { .. } => None,
                _ => Some(c.first_field),
            };
        }
        self.fields
            .iter()
            .position(|f| f.name == name && f.present_of.is_none())
    }

    /// Names of the columns with NULLs, in file order.
    pub fn nullable(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| self.fields[c.first_field].validity.is_some())
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// A parsed dataset: its schema and the encoded values, one vector per field column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Public metadata.
    pub schema: Schema,
    /// `values[f][row]`: the encoded value of field column `f` at `row` (scale 2^16, 0 where
    /// NULL; 0 or 1 in a validity column).
    pub values: Vec<Vec<i128>>,
}

/// Which columns to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only these columns, stored in file order (`None`: every column).
    pub columns: Option<Vec<String>>,
}

/// What [`inspect`] found about one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnReport {
    /// Column number, 1-based.
    pub column: usize,
    /// Column name.
    pub name: String,
    /// Its type, if the column can be stored.
    pub kind: Option<ColumnKind>,
    /// NULL cells.
    pub nulls: usize,
    /// Why it cannot be stored, if it cannot.
    pub problem: Option<String>,
}

impl Dataset {
    /// The field columns as field elements (signed values map to `p - |v|`).
    pub fn to_field<F: PrimeField>(&self) -> Vec<Vec<F>> {
        self.values
            .iter()
            .map(|col| col.iter().map(|v| F::from_i128(*v)).collect())
            .collect()
    }

    /// Parses a CSV text, every column.
    ///
    /// # Errors
    /// A [`CsvError`] naming the line and column of the first bad cell, or every unusable column.
    pub fn parse(text: &str) -> Result<Self, CsvError> {
        Self::from_bytes_with(text.as_bytes(), &ReadOptions::default())
    }

    /// Parses the bytes of a CSV file.
    ///
    /// # Errors
    /// As [`Dataset::parse`]; [`CsvError::NotUtf8`], [`CsvError::Utf16`],
    /// [`CsvError::UnknownColumn`] for a selected column the header lacks.
    pub fn from_bytes_with(bytes: &[u8], options: &ReadOptions) -> Result<Self, CsvError> {
        let table = read_table(bytes, options.columns.as_deref())?;
        let mut schema = Schema {
            rows: table.lines.len(),
            columns: Vec::new(),
            fields: Vec::new(),
        };
        let mut values = Vec::new();
        let mut unusable = Vec::new();
        for col in &table.columns {
            match encode_column(col, &table.lines)? {
                Encoded::Unusable(u) => unusable.push(u),
                Encoded::Column(c) => {
                    if !unusable.is_empty() {
                        continue;
                    }
                    let first_field = schema.fields.len();
                    for (mut f, v) in c.fields {
                        if let Some(off) = f.validity {
                            f.validity = Some(first_field + off);
                        }
                        if let Some(off) = f.present_of {
                            f.present_of = Some(first_field + off);
                        }
                        schema.fields.push(f);
                        values.push(v);
                    }
                    schema.columns.push(Column {
                        name: col.name.clone(),
                        kind: c.kind,
                        first_field,
                    });
                }
            }
        }
        if !unusable.is_empty() {
            return Err(CsvError::Unusable { columns: unusable });
        }
        Ok(Dataset { schema, values })
    }
}

/// Reports every column of a CSV file: its type, NULL count, and why it cannot be stored.
///
/// # Errors
/// Errors of the file's structure ([`CsvError::RowLength`], quotes, encoding, header, no rows);
/// problems of single columns are reported in [`ColumnReport::problem`].
pub fn inspect(bytes: &[u8]) -> Result<Vec<ColumnReport>, CsvError> {
    let table = read_table(bytes, None)?;
    Ok(table
        .columns
        .iter()
        .map(|col| {
            let nulls = col.cells.iter().filter(|c| c.is_null()).count();
            let (kind, problem) = match encode_column(col, &table.lines) {
                Ok(Encoded::Column(c)) => (Some(c.kind), None),
                Ok(Encoded::Unusable(u)) => (None, Some(u.to_string())),
                Err(e) => (None, Some(e.to_string())),
            };
            ColumnReport {
                column: col.number,
                name: col.name.clone(),
                kind,
                nulls,
                problem,
            }
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    Int,
    Dec,
    Bool,
    Cat,
    Infer,
}

/// One cell as read.
#[derive(Debug, Clone)]
struct Cell {
    text: String,
    quoted: bool,
}

impl Cell {
    fn is_null(&self) -> bool {
        if self.quoted {
            self.text.is_empty()
        } else {
            NULL_TOKENS.contains(&self.text.as_str())
        }
    }
}

/// A selected column's header and cells.
struct RawColumn {
    number: usize,
    name: String,
    declared: Declared,
    range: Option<DeclaredRange>,
    cells: Vec<Cell>,
}

/// A header's `MIN..MAX`.
#[derive(Debug, Clone)]
struct DeclaredRange {
    lo: Decimal,
    hi: Decimal,
    lo_text: String,
    hi_text: String,
}

/// The selected columns, and the line each data row starts on.
struct Table {
    columns: Vec<RawColumn>,
    lines: Vec<usize>,
}

/// A cursor over the text, splitting records (RFC 4180).
struct Records<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Records<'a> {
    fn byte(&self, at: usize) -> Option<u8> {
        self.text.as_bytes().get(at).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.byte(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Reads the next non-blank record into `cells`; returns the line it starts on.
    fn next(&mut self, cells: &mut Vec<Cell>) -> Result<Option<usize>, CsvError> {
        loop {
            if self.pos >= self.text.len() {
                return Ok(None);
            }
            cells.clear();
            let first_line = self.line;
            loop {
                if cells.len() >= MAX_COLUMNS {
                    return Err(CsvError::TooManyColumns {
                        line: first_line,
                        max: MAX_COLUMNS,
                    });
                }
                let cell = self.cell(cells.len() + 1)?;
                cells.push(cell);
                match self.byte(self.pos) {
                    Some(b',') => self.pos += 1,
                    Some(b'\r') => {
                        self.pos += 1;
                        if self.byte(self.pos) == Some(b'\n') {
                            self.pos += 1;
                        }
                        self.line += 1;
                        break;
                    }
                    Some(b'\n') => {
                        self.pos += 1;
                        self.line += 1;
                        break;
                    }
                    _ => break,
                }
            }
            let blank = cells.len() == 1 && !cells[0].quoted && cells[0].text.is_empty();
            if !blank {
                return Ok(Some(first_line));
            }
        }
    }

    fn cell(&mut self, column: usize) -> Result<Cell, CsvError> {
        let too_long = |line| CsvError::CellTooLong {
            line,
            column,
            max: MAX_CELL_BYTES,
        };
        let start = self.pos;
        self.skip_blanks();
        if self.byte(self.pos) != Some(b'"') {
            while !matches!(self.byte(self.pos), None | Some(b',' | b'\n' | b'\r')) {
                self.pos += 1;
                if self.pos - start > MAX_CELL_BYTES {
                    return Err(too_long(self.line));
                }
            }
            return Ok(Cell {
                text: self.text[start..self.pos].trim().to_owned(),
                quoted: false,
            });
        }
        let open_line = self.line;
        self.pos += 1;
        let mut text = String::new();
        let mut seg = self.pos;
        loop {
            match self.byte(self.pos) {
                None => {
                    return Err(CsvError::UnterminatedQuote {
                        line: open_line,
                        column,
                    })
                }
                Some(b'"') => {
                    text.push_str(&self.text[seg..self.pos]);
                    if self.byte(self.pos + 1) == Some(b'"') {
                        text.push('"');
                        self.pos += 2;
                        seg = self.pos;
                    } else {
                        self.pos += 1;
                        break;
                    }
                }
                Some(b'\n') => {
                    self.line += 1;
                    self.pos += 1;
                }
                Some(b'\r') => {
                    if self.byte(self.pos + 1) != Some(b'\n') {
                        self.line += 1;
                    }
                    self.pos += 1;
                }
                Some(_) => self.pos += 1,
            }
            if text.len() + (self.pos - seg) > MAX_CELL_BYTES {
                return Err(too_long(open_line));
            }
        }
        self.skip_blanks();
        match self.byte(self.pos) {
            None | Some(b',' | b'\n' | b'\r') => Ok(Cell { text, quoted: true }),
            Some(_) => Err(CsvError::TextAfterQuote {
                line: self.line,
                column,
            }),
        }
    }
}

fn decode_text(bytes: &[u8]) -> Result<&str, CsvError> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(CsvError::Utf16);
    }
    let bytes = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| CsvError::NotUtf8 {
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
    })
}

fn shown(s: &str) -> String {
    s.chars().take(SHOWN_CHARS).collect()
}

fn parse_header_cell(column: usize, cell: &str) -> Result<RawColumn, CsvError> {
    let bad = |reason: &str| CsvError::BadHeader {
        column,
        cell: shown(cell),
        reason: reason.to_owned(),
    };
    let mut parts = cell.split(':');
    let name = parts.next().unwrap_or_default().trim();
    let mut declared = Declared::Infer;
    let mut range = None;
    for part in parts.map(str::trim) {
        if let Some((lo, hi)) = part.split_once("..") {
            if range.is_some() {
                return Err(bad("two ranges"));
            }
            let parse = |s: &str| {
                Decimal::parse_scientific(s.trim())
                    .map_err(|_| bad("a range is MIN..MAX with two numbers"))
            };
            let (l, h) = (parse(lo)?, parse(hi)?);
            if h.add(&l.neg()).mantissa.is_negative() {
                return Err(bad("the range's minimum is above its maximum"));
            }
            range = Some(DeclaredRange {
                lo: l,
                hi: h,
                lo_text: shown(lo.trim()),
                hi_text: shown(hi.trim()),
            });
            continue;
        }
        if declared != Declared::Infer {
            return Err(bad("two types"));
        }
        declared = match part {
            "int" => Declared::Int,
            "dec" => Declared::Dec,
            "bool" => Declared::Bool,
            "cat" => Declared::Cat,
            _ => return Err(bad("type must be int, dec, bool or cat, a range MIN..MAX")),
        };
    }
    if name.is_empty() {
        return Err(bad("empty column name"));
    }
    if name.contains('=') {
        return Err(bad("column names may not contain '='"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad(
            "column names may not contain control characters (a line break, a tab, an escape)",
        ));
    }
    if range.is_some() && matches!(declared, Declared::Bool | Declared::Cat) {
        return Err(bad("only numeric columns take a range"));
    }
    Ok(RawColumn {
        number: column,
        name: name.to_owned(),
        declared,
        range,
        cells: Vec::new(),
    })
}

fn read_table(bytes: &[u8], select: Option<&[String]>) -> Result<Table, CsvError> {
    let text = decode_text(bytes)?;
    let mut records = Records {
        text,
        pos: 0,
        line: 1,
    };
    let mut cells = Vec::new();
    if records.next(&mut cells)?.is_none() {
        return Err(CsvError::NoHeader);
    }
    let mut header = Vec::with_capacity(cells.len());
    let mut seen = BTreeSet::new();
    for (i, cell) in cells.iter().enumerate() {
        let col = parse_header_cell(i + 1, &cell.text)?;
        if !seen.insert(col.name.clone()) {
            return Err(CsvError::DuplicateColumn {
                column: i + 1,
                name: col.name,
            });
        }
        header.push(col);
    }
    let expected = header.len();
    // Which header positions are kept.
    let keep: Vec<bool> = match select {
        None => vec![true; expected],
        Some(names) => {
            if names.is_empty() {
                return Err(CsvError::NoColumns);
            }
            // A name, or the 0-based position of a column no name matches (the only way to
            // select a column whose name holds the list separator).
            let mut keep = vec![false; expected];
            for n in names {
                let at = header.iter().position(|c| &c.name == n).or_else(|| {
                    n.parse::<usize>()
                        .ok()
                        .filter(|&i| i < expected && !n.starts_with('+'))
                });
                match at {
                    Some(i) => keep[i] = true,
                    None => return Err(CsvError::UnknownColumn { name: shown(n) }),
                }
            }
            keep
        }
    };
    let mut lines = Vec::new();
    while let Some(line) = records.next(&mut cells)? {
        if cells.len() != expected {
            return Err(CsvError::RowLength {
                line,
                got: cells.len(),
                expected,
            });
        }
        for ((col, cell), k) in header.iter_mut().zip(cells.drain(..)).zip(&keep) {
            if *k {
                col.cells.push(cell);
            }
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(CsvError::NoRows);
    }
    let columns = header
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect();
    Ok(Table { columns, lines })
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

fn number(s: &str) -> Option<Decimal> {
    Decimal::parse_scientific(s).ok()
}

/// The fast path of the common cell: `[-+]?digits[.digits]` with at most 18 digits in all,
/// encoded at scale 2^16 with the rounding of [`Decimal::scaled`] (half away from zero), in
/// `i128` arithmetic (`|mantissa| < 10^18`, so `|mantissa| * 2^16 < 2^76`). `None` for
/// anything else (scientific notation, longer literals, text): the exact big-integer path
/// decides those.
fn fast_scaled(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty()) || int.len() + frac.len() > 18 {
        return None;
    }
    let mut m: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        m = m * 10 + i128::from(b - b'0');
    }
    let den = 10i128.pow(frac.len() as u32);
    let num = m << FRAC_BITS;
    let (q, r) = (num / den, num % den);
    let q = if 2 * r >= den { q + 1 } else { q };
    Some(if neg { -q } else { q })
}

enum Encoded {
    Column(EncodedColumn),
    Unusable(UnusableColumn),
}

/// A column's field columns (validity and present_of relative to its first field).
struct EncodedColumn {
    kind: ColumnKind,
    fields: Vec<(FieldColumn, Vec<i128>)>,
}

fn infer(col: &RawColumn, lines: &[usize]) -> Result<Declared, UnusableColumn> {
    let unusable = |reason| UnusableColumn {
        column: col.number,
        name: col.name.clone(),
        reason,
    };
    let present = || col.cells.iter().filter(|c| !c.is_null());
    if present().next().is_none() {
        return Err(unusable(Unusable::AllNull));
    }
    if col.declared != Declared::Infer {
        return Ok(col.declared);
    }
    if present().all(|c| is_integer(&c.text)) {
        return Ok(Declared::Int);
    }
    if present().all(|c| fast_scaled(&c.text).is_some() || number(&c.text).is_some()) {
        return Ok(Declared::Dec);
    }
    if present().all(|c| parse_bool(&c.text).is_some()) {
        return Ok(Declared::Bool);
    }
    let (cell, line) = col
        .cells
        .iter()
        .zip(lines)
        .find(|(c, _)| !c.is_null() && number(&c.text).is_none())
        .expect("some present cell is not a number, or the column would be a decimal one");
    Err(unusable(Unusable::Text {
        line: *line,
        value: shown(&cell.text),
    }))
}

/// The order of a category column's levels (and so of a `group by` table and a `hist`):
/// labels that read as numbers first, by value (`2` before `10`), then the others as text.
fn level_order(a: &str, b: &str) -> std::cmp::Ordering {
    let num = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

fn encode_column(col: &RawColumn, lines: &[usize]) -> Result<Encoded, CsvError> {
    let ty = match infer(col, lines) {
        Ok(t) => t,
        Err(u) => return Ok(Encoded::Unusable(u)),
    };
    let one = 1i128 << FRAC_BITS;
    if ty == Declared::Cat {
        let mut levels: BTreeSet<&str> = BTreeSet::new();
        for (c, line) in col.cells.iter().zip(lines) {
            if c.is_null() {
                continue;
            }
            if c.text.len() > MAX_LABEL_BYTES || c.text.chars().any(char::is_control) {
                return Ok(Encoded::Unusable(UnusableColumn {
                    column: col.number,
                    name: col.name.clone(),
                    reason: Unusable::BadLabel {
                        line: *line,
                        value: shown(&c.text),
                    },
                }));
            }
            levels.insert(c.text.as_str());
            if levels.len() > MAX_CATEGORY_LEVELS {
                let all: BTreeSet<&str> = col
                    .cells
                    .iter()
                    .filter(|c| !c.is_null())
                    .map(|c| c.text.as_str())
                    .collect();
                return Ok(Encoded::Unusable(UnusableColumn {
                    column: col.number,
                    name: col.name.clone(),
                    reason: Unusable::TooManyLevels { levels: all.len() },
                }));
            }
        }
        let mut levels: Vec<String> = levels.into_iter().map(str::to_owned).collect();
        levels.sort_by(|a, b| level_order(a, b));
        let fields = levels
            .iter()
            .map(|level| {
                let v: Vec<i128> = col
                    .cells
                    .iter()
                    .map(|c| {
                        if !c.is_null() && c.text == *level {
                            one
                        } else {
                            0
                        }
                    })
                    .collect();
                let f = FieldColumn {
                    name: format!("{}={level}", col.name),
                    min: v.iter().copied().min().unwrap_or(0),
                    max: v.iter().copied().max().unwrap_or(0),
                    validity: None,
                    present_of: None,
                };
                (f, v)
            })
            .collect();
        return Ok(Encoded::Column(EncodedColumn {
            kind: ColumnKind::Category { levels },
            fields,
        }));
    }
    let mut values = Vec::with_capacity(col.cells.len());
    let mut valid = Vec::with_capacity(col.cells.len());
    let (mut min, mut max) = (i128::MAX, i128::MIN);
    for (cell, &line) in col.cells.iter().zip(lines) {
        if cell.is_null() {
            values.push(0);
            valid.push(0);
            continue;
        }
        let bad = |expected| CsvError::BadValue {
            line,
            column: col.name.clone(),
            value: shown(&cell.text),
            expected,
        };
        let out_of_range = || CsvError::OutOfRange {
            line,
            column: col.name.clone(),
            value: shown(&cell.text),
            bits: MAX_ENCODED_BITS,
        };
        if col.range.is_none() && matches!(ty, Declared::Int | Declared::Dec) {
            let fast = match ty {
                Declared::Int if !is_integer(&cell.text) => None,
                _ => fast_scaled(&cell.text),
            };
            if let Some(v) = fast {
                min = min.min(v);
                max = max.max(v);
                values.push(v);
                valid.push(1);
                continue;
            }
        }
        let d = match ty {
            // An integer literal fails to parse only when it is too long.
            Declared::Int if is_integer(&cell.text) => {
                Decimal::parse(&cell.text).map_err(|_| out_of_range())?
            }
            Declared::Int => return Err(bad("an integer")),
            Declared::Dec => number(&cell.text).ok_or_else(|| bad("a decimal"))?,
            _ => Decimal::integer(BigInt::from(u8::from(
                parse_bool(&cell.text).ok_or_else(|| bad("a boolean"))?,
            ))),
        };
        if let Some(r) = &col.range {
            let below = d.add(&r.lo.neg()).mantissa.is_negative();
            let above = r.hi.add(&d.neg()).mantissa.is_negative();
            if below || above {
                return Err(CsvError::OutsideRange {
                    line,
                    column: col.name.clone(),
                    value: shown(&cell.text),
                    min: r.lo_text.clone(),
                    max: r.hi_text.clone(),
                });
            }
        }
        let v = encode_value(&d, line, col, &cell.text)?;
        min = min.min(v);
        max = max.max(v);
        values.push(v);
        valid.push(1);
    }
    if let Some(r) = &col.range {
        min = encode_value(&r.lo, 1, col, &r.lo_text)?;
        max = encode_value(&r.hi, 1, col, &r.hi_text)?;
    }
    let kind = match ty {
        Declared::Int => ColumnKind::Integer,
        Declared::Dec => ColumnKind::Decimal,
        _ => ColumnKind::Boolean,
    };
    let nullable = valid.contains(&0);
    let mut fields = vec![(
        FieldColumn {
            name: col.name.clone(),
            min,
            max,
            validity: nullable.then_some(1),
            present_of: None,
        },
        values,
    )];
    if nullable {
        fields.push((
            FieldColumn {
                name: format!("present({})", col.name),
                min: 0,
                max: 1,
                validity: None,
                present_of: Some(0),
            },
            valid,
        ));
    }
    Ok(Encoded::Column(EncodedColumn { kind, fields }))
}

fn encode_value(d: &Decimal, line: usize, col: &RawColumn, text: &str) -> Result<i128, CsvError> {
    let big = d.scaled(Scale::UNIT);
    let out = || CsvError::OutOfRange {
        line,
        column: col.name.clone(),
        value: shown(text),
        bits: MAX_ENCODED_BITS,
    };
    if big.abs().bits() >= u64::from(MAX_ENCODED_BITS) {
        return Err(out());
    }
    big.to_i128().ok_or_else(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, PrimeField};
    use proptest::prelude::*;

    const ONE: i128 = 1 << 16;

    /// Category columns are bounded (each label is a shared 0/1 column) and names and labels
    /// carry no control characters (they are printed in results): refused by name, at the
    /// boundary.
    #[test]
    fn category_labels_and_names_are_bounded() {
        let labels = |n: usize| {
            let mut t = String::from("a:cat\n");
            for i in 0..n {
                t.push_str(&format!("l{i}\n"));
            }
            t
        };
        assert!(Dataset::parse(&labels(MAX_CATEGORY_LEVELS)).is_ok());
        let e = Dataset::parse(&labels(5_000)).unwrap_err().to_string();
        assert!(
            e.contains("5000 distinct labels") && e.contains("\"a\""),
            "{e}"
        );
        let long = "x".repeat(MAX_LABEL_BYTES + 1);
        let e = Dataset::parse(&format!("a:cat\nok\n{long}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(Dataset::parse(&format!("a:cat\n{}\n", "x".repeat(MAX_LABEL_BYTES))).is_ok());
        let e = Dataset::parse("\"x\ny\",b\n1,2\n").unwrap_err().to_string();
        assert!(e.contains("control characters"), "{e}");
        let e = Dataset::parse("a:cat\n\"p\u{1b}[2Jq\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("control characters"), "{e}");
    }

    /// Levels that read as numbers come in numeric order (a `group by plan` table reads 1, 2,
    /// ..., 10, not 1, 10, 2), then the other labels as text; each level's 0/1 column follows.
    #[test]
    fn category_levels_in_numeric_then_text_order() {
        let d = Dataset::parse(
            "p:cat
10
2
b
1
-3
a
2.5
10
",
        )
        .unwrap();
        let ColumnKind::Category { levels } = &d.schema.columns[0].kind else {
            panic!("a category column");
        };
        assert_eq!(levels, &["-3", "1", "2", "2.5", "10", "a", "b"]);
        let names: Vec<&str> = d.schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["p=-3", "p=1", "p=2", "p=2.5", "p=10", "p=a", "p=b"]);
        // p=10 is 1 on the two rows labelled 10 (lines 2 and 9).
        assert_eq!(d.values[4].iter().filter(|v| **v == ONE).count(), 2);
        assert_eq!(d.values[4][0], ONE);
    }

    /// SQL's and spreadsheets' NULL markers are NULL; a schema with ranges beyond 64 bits
    /// survives a JSON round trip (as `serde_json::Value` too).
    #[test]
    fn null_markers_and_wide_ranges() {
        let d =
            Dataset::parse("a,b\n1,12345678901234567890\nNULL,2\nnull,3\nN/A,4\n5,6\n").unwrap();
        let a = &d.schema.fields[0];
        assert!(a.validity.is_some(), "{:?}", d.schema);
        assert_eq!(d.values[0], vec![ONE, 0, 0, 0, 5 * ONE]);
        assert_eq!(d.values[1], vec![1, 0, 0, 0, 1]);
        let b = d.schema.fields.iter().find(|f| f.name == "b").unwrap();
        assert_eq!(b.max, 12345678901234567890i128 * ONE);
        let v = serde_json::to_value(&d.schema).unwrap();
        let back: Schema = serde_json::from_value(v).unwrap();
        assert_eq!(back, d.schema);
        assert!(Dataset::parse("a\n1\n-\n").is_err());
    }

    /// The fast path agrees with the exact big-integer path on every literal it takes.
    #[test]
    fn fast_path_matches_the_exact_encoding() {
        let mut rng = rand::thread_rng();
        use rand::Rng;
        let mut cases: Vec<String> = vec![
            "0".into(),
            "-0".into(),
            "+7".into(),
            ".5".into(),
            "5.".into(),
            "-.5".into(),
            "0.00001525878".into(),
            "-0.0000076293945".into(),
            "999999999999999999".into(),
            "-99999999.9999999999".into(),
            "1.5".into(),
            "-2.5".into(),
            "0.000007629394531".into(),
        ];
        for _ in 0..20_000 {
            let width: u32 = rng.gen_range(1..10);
            let int: u64 = rng.gen_range(0..10u64.pow(width));
            let digits = rng.gen_range(0..9);
            let frac: u64 = rng.gen_range(0..10u64.pow(digits));
            let sign = ["", "-", "+"][rng.gen_range(0..3)];
            cases.push(if digits == 0 {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{frac:0width$}", width = digits as usize)
            });
        }
        for c in &cases {
            let fast = fast_scaled(c).unwrap_or_else(|| panic!("{c} takes the fast path"));
            let exact = Decimal::parse(c)
                .unwrap()
                .scaled(Scale::UNIT)
                .to_i128()
                .unwrap();
            assert_eq!(fast, exact, "{c}");
        }
        for c in [
            "",
            "-",
            ".",
            "1e5",
            "1.2.3",
            "x",
            "1234567890123456789",
            "--1",
            " 1",
        ] {
            assert_eq!(fast_scaled(c), None, "{c:?}");
        }
    }

    fn names(d: &Dataset) -> Vec<&str> {
        d.schema.fields.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn parses_every_kind() {
        let d = Dataset::parse(
            "age,income:dec,smoker:bool,color:cat\n30,1.5,yes,red\n-4,-0.25,no,\"blue\"\n7,2,1,red\n",
        )
        .unwrap();
        assert_eq!(d.schema.rows, 3);
        assert_eq!(
            names(&d),
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
        assert!(d.schema.nullable().is_empty());
        let f: Vec<Vec<Mersenne127>> = d.to_field();
        assert_eq!(f[0][1], -Mersenne127::from_u64(4 << 16));
    }

    #[test]
    fn decimals_round_to_nearest_and_take_exponents() {
        let d = Dataset::parse("x\n0.1\n-0.1\n0.00000762939453125\n1.5e-1\n2E2\n").unwrap();
        // 0.1 * 65536 = 6553.6 -> 6554; 2^-17 rounds away from zero to 1.
        assert_eq!(d.values[0], [6554, -6554, 1, 9830, 200 * ONE]);
        assert_eq!(d.schema.column("x").unwrap().kind, ColumnKind::Decimal);
    }

    #[test]
    fn nulls_get_a_validity_column() {
        // Empty, NA, NaN and "" are NULL; a quoted "NA" in a category is the label NA.
        let d =
            Dataset::parse("a,b,c:cat,d\n1,,x,5\n,2.5,,6\nNA,NaN,\"NA\",7\n4,\"\",x,8\n").unwrap();
        assert_eq!(
            names(&d),
            ["a", "present(a)", "b", "present(b)", "c=NA", "c=x", "d"]
        );
        assert_eq!(d.values[0], [ONE, 0, 0, 4 * ONE]);
        assert_eq!(d.values[1], [1, 0, 0, 1]);
        assert_eq!(d.values[2], [0, 5 * ONE / 2, 0, 0]);
        assert_eq!(d.values[3], [0, 1, 0, 0]);
        assert_eq!(d.values[4], [0, 0, ONE, 0]);
        assert_eq!(d.values[5], [ONE, 0, 0, ONE]);
        assert_eq!(d.schema.fields[0].validity, Some(1));
        assert_eq!(d.schema.fields[1].present_of, Some(0));
        assert_eq!(d.schema.fields[1].scale(), Scale::INTEGER);
        assert_eq!(d.schema.fields[0].scale(), Scale::UNIT);
        // The range covers present values only.
        assert_eq!(
            (d.schema.fields[0].min, d.schema.fields[0].max),
            (ONE, 4 * ONE)
        );
        assert_eq!(d.schema.nullable(), ["a", "b"]);
        // Validity columns are not addressable by name.
        assert_eq!(d.schema.field_index("present(a)"), None);
        assert_eq!(d.schema.column("b").unwrap().first_field, 2);
    }

    #[test]
    fn unusable_columns_are_all_named_and_can_be_left_out() {
        let text = "id,note,empty,x\n1,hello,,2\n2,,NA,3\n";
        let e = Dataset::parse(text).unwrap_err();
        assert_eq!(
            e,
            CsvError::Unusable {
                columns: vec![
                    UnusableColumn {
                        column: 2,
                        name: "note".into(),
                        reason: Unusable::Text {
                            line: 2,
                            value: "hello".into()
                        }
                    },
                    UnusableColumn {
                        column: 3,
                        name: "empty".into(),
                        reason: Unusable::AllNull
                    },
                ]
            }
        );
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(
            msg.starts_with(
                "2 columns cannot be stored: column 2 \"note\" has text \"hello\" at line 2"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("column 3 \"empty\" is entirely empty (NULL)"),
            "{msg}"
        );
        assert!(msg.contains("--columns"), "{msg}");
        let opts = ReadOptions {
            columns: Some(vec!["x".into(), "id".into()]),
        };
        let d = Dataset::from_bytes_with(text.as_bytes(), &opts).unwrap();
        assert_eq!(names(&d), ["id", "x"]);
        assert_eq!(d.values[1], [2 * ONE, 3 * ONE]);
        let opts = ReadOptions {
            columns: Some(vec!["nope".into()]),
        };
        assert_eq!(
            Dataset::from_bytes_with(text.as_bytes(), &opts).unwrap_err(),
            CsvError::UnknownColumn {
                name: "nope".into()
            }
        );
        let opts = ReadOptions {
            columns: Some(vec![]),
        };
        assert_eq!(
            Dataset::from_bytes_with(text.as_bytes(), &opts).unwrap_err(),
            CsvError::NoColumns
        );
        // The labels column can be declared a category instead.
        let d = Dataset::parse("id,note:cat\n1,hello\n2,\n").unwrap();
        assert_eq!(names(&d), ["id", "note=hello"]);
        let report = inspect(text.as_bytes()).unwrap();
        let summary: Vec<_> = report
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.kind.clone(),
                    r.nulls,
                    r.problem.is_some(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("id", Some(ColumnKind::Integer), 0, false),
                ("note", None, 1, true),
                ("empty", None, 2, true),
                ("x", Some(ColumnKind::Integer), 0, false),
            ]
        );
    }

    #[test]
    fn quotes_line_ends_and_bom() {
        // BOM, CRLF, a quoted comma, a doubled quote, a quoted line break, a blank line, a lone CR.
        let text = "\u{feff}x,\"la,bel:cat\"\r\n1,\"a,\"\"b\"\r\n\r\n2,\"two\nlines\"\r3,c\n";
        // A label may not hold the line break (it is printed in results), but it is read as
        // one cell: the error names its line.
        let e = Dataset::parse(text).unwrap_err().to_string();
        assert!(
            e.contains("line 4") && e.contains("control characters"),
            "{e}"
        );
        let d = Dataset::parse(&text.replace("two\nlines", "two lines")).unwrap();
        assert_eq!(
            names(&d),
            ["x", "la,bel=a,\"b", "la,bel=c", "la,bel=two lines"]
        );
        assert_eq!(d.values[0], [ONE, 2 * ONE, 3 * ONE]);
        // Line numbers count the quoted line break: the short row is on line 4.
        let e = Dataset::parse("x,y\n1,\"a\nb\"\n2\n").unwrap_err();
        assert_eq!(
            e,
            CsvError::RowLength {
                line: 4,
                got: 1,
                expected: 2
            }
        );
        let e = Dataset::parse("x,y\r\n1,2\r\n\r\n3,4,5\r\n").unwrap_err();
        assert_eq!(e.to_string(), "line 4: 3 cells, the header has 2");
        assert_eq!(
            Dataset::from_bytes_with(b"\xff\xfex\x00", &ReadOptions::default()).unwrap_err(),
            CsvError::Utf16
        );
        assert_eq!(
            Dataset::from_bytes_with(b"x\n1\n\xc3\x28\n", &ReadOptions::default()).unwrap_err(),
            CsvError::NotUtf8 { line: 3 }
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases: &[(&str, CsvError)] = &[
            (
                "a:int,b\n1,2\n1.5,3\n",
                CsvError::BadValue {
                    line: 3,
                    column: "a".into(),
                    value: "1.5".into(),
                    expected: "an integer",
                },
            ),
            (
                "a,b\n1,2\n3\n",
                CsvError::RowLength {
                    line: 3,
                    got: 1,
                    expected: 2,
                },
            ),
            (
                "a,a\n1,2\n",
                CsvError::DuplicateColumn {
                    column: 2,
                    name: "a".into(),
                },
            ),
            (
                "a\n\"1\n",
                CsvError::UnterminatedQuote { line: 2, column: 1 },
            ),
            (
                "a,b\n1,\"2\"x\n",
                CsvError::TextAfterQuote { line: 2, column: 2 },
            ),
            ("a\n", CsvError::NoRows),
            ("", CsvError::NoHeader),
            ("\n\n  \n", CsvError::NoHeader),
            (
                "age:int:0..120\n30\n121\n",
                CsvError::OutsideRange {
                    line: 3,
                    column: "age".into(),
                    value: "121".into(),
                    min: "0".into(),
                    max: "120".into(),
                },
            ),
            (
                "t:-1.5..1e1\n-1.6\n",
                CsvError::OutsideRange {
                    line: 2,
                    column: "t".into(),
                    value: "-1.6".into(),
                    min: "-1.5".into(),
                    max: "1e1".into(),
                },
            ),
            (
                "b:bool\nmaybe\n",
                CsvError::BadValue {
                    line: 2,
                    column: "b".into(),
                    value: "maybe".into(),
                    expected: "a boolean",
                },
            ),
        ];
        for (text, want) in cases {
            let got = Dataset::parse(text).unwrap_err();
            assert_eq!(&got, want, "{text:?}");
            assert!(!got.to_string().contains('\n'), "{got}");
        }
        for header in [
            "a:float",
            "a:int:bool",
            "a:5..1",
            "a:0..x",
            "=x",
            ":int",
            "a:cat:0..1",
        ] {
            let e = Dataset::parse(&format!("{header}\n1\n")).unwrap_err();
            assert!(
                matches!(e, CsvError::BadHeader { column: 1, .. }),
                "{header}: {e}"
            );
        }
        let big = "9".repeat(40);
        let e = Dataset::parse(&format!("a\n{big}\n")).unwrap_err();
        assert!(matches!(e, CsvError::OutOfRange { line: 2, .. }), "{e}");
        let e = Dataset::parse(&format!("a\n{}\n", "9".repeat(200))).unwrap_err();
        assert!(matches!(e, CsvError::OutOfRange { line: 2, .. }), "{e}");
        let long = "1".repeat(MAX_CELL_BYTES + 1);
        let e = Dataset::parse(&format!("a\n{long}\n")).unwrap_err();
        assert!(
            matches!(
                e,
                CsvError::CellTooLong {
                    line: 2,
                    column: 1,
                    ..
                }
            ),
            "{e}"
        );
        let wide = vec!["c"; MAX_COLUMNS + 1].join(",");
        let e = Dataset::parse(&format!("{wide}\n")).unwrap_err();
        assert!(matches!(e, CsvError::TooManyColumns { line: 1, .. }), "{e}");
        // A declared range becomes the public range, whatever the values.
        let d = Dataset::parse("age:int:0..120\n30\n\n40\n").unwrap();
        assert_eq!(
            (d.schema.fields[0].min, d.schema.fields[0].max),
            (0, 120 * ONE)
        );
    }

    proptest! {
        /// No input panics: arbitrary bytes.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = Dataset::from_bytes_with(&bytes, &ReadOptions::default());
            let _ = inspect(&bytes);
        }

        /// No input panics: text made of the characters that matter to the reader.
        #[test]
        fn csv_like_text_never_panics(
            chars in prop::collection::vec(prop::sample::select(vec![
                'a', 'x', '1', '0', '-', '.', 'e', ',', '"', '\n', '\r', ' ', ':', 'N', 'A', '=',
                '\u{feff}', 'é',
            ]), 0..200)
        ) {
            let text: String = chars.into_iter().collect();
            if let Ok(d) = Dataset::parse(&text) {
                prop_assert_eq!(d.values.len(), d.schema.fields.len());
                prop_assert!(d.values.iter().all(|v| v.len() == d.schema.rows));
            }
        }
    }
}
