//! Column definitions of the PostgreSQL DDL translation (`pg_ddl`): a
//! MySQL type with its length / precision / labels and attributes (NULL,
//! NOT NULL, DEFAULT, AUTO_INCREMENT, keys; charset, collation, comment,
//! ON UPDATE, position ignored), and DEFAULT values as PostgreSQL
//! expressions; the primary-key statements (DO blocks that find the
//! key's constraint). Touches nothing but memory.

use super::{Parser, Tok};
use crate::apply::sql::Dialect;
use crate::apply::target::{lit, pg_type};

/// A MySQL column type, as `create_tables` reads it from the source's
/// information_schema: DATA_TYPE, COLUMN_TYPE, precision, scale.
#[derive(Debug)]
pub(super) struct ColType {
    pub(super) data_type: String,
    pub(super) column_type: String,
    pub(super) prec: Option<u64>,
    pub(super) scale: Option<u64>,
    /// ENUM / SET labels.
    pub(super) labels: Vec<String>,
}

impl ColType {
    pub(super) fn pg(&self) -> String {
        pg_type(&self.data_type, &self.column_type, self.prec, self.scale)
    }

    /// The value MySQL gives existing rows for a new NOT NULL column
    /// without DEFAULT (`None`: zero dates, which PostgreSQL refuses).
    pub(super) fn implicit_default(&self) -> Option<String> {
        let pg = self.pg();
        match self.data_type.as_str() {
            "date" | "datetime" | "timestamp" => None,
            "time" => Some("'00:00:00'".into()),
            "enum" => Some(lit(
                Dialect::Postgres,
                self.labels.first().map_or("", String::as_str),
            )),
            _ if pg == "bytea" => Some("'\\x'".into()),
            _ if pg == "text" => Some("''".into()),
            "json" => Some("'null'".into()),
            _ => Some("0".into()),
        }
    }
}

/// A column definition.
#[derive(Debug)]
pub(super) struct ColDef {
    pub(super) ty: ColType,
    pub(super) not_null: bool,
    /// The PostgreSQL DEFAULT expression.
    pub(super) default: Option<String>,
    pub(super) auto_increment: bool,
    pub(super) primary: bool,
}

/// Type names (lower case, aliases resolved) the mapping knows.
const TYPES: &[&str] = &[
    "tinyint",
    "smallint",
    "mediumint",
    "int",
    "bigint",
    "decimal",
    "float",
    "double",
    "bit",
    "year",
    "date",
    "datetime",
    "timestamp",
    "time",
    "json",
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
    "enum",
    "set",
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "uuid",
    "inet4",
    "inet6",
];

fn alias(name: &str) -> &str {
    match name {
        "integer" | "int4" => "int",
        "int1" | "bool" | "boolean" => "tinyint",
        "int2" => "smallint",
        "int3" | "middleint" => "mediumint",
        "int8" | "serial" => "bigint",
        "dec" | "numeric" | "fixed" | "number" => "decimal",
        "real" | "float8" => "double",
        "float4" => "float",
        "character" | "nchar" => "char",
        "nvarchar" | "varchar2" => "varchar",
        "raw" => "varbinary",
        other => other,
    }
}

impl Parser<'_> {
    fn number(&mut self) -> Result<u64, String> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                self.i += 1;
                n.parse()
                    .map_err(|_| format!("expected a whole number, found {n}"))
            }
            _ => Err(format!("expected a number at {}", self.near())),
        }
    }

    /// `(n)` or `(p, s)` after a type name.
    fn type_args(&mut self) -> Result<(Option<u64>, Option<u64>), String> {
        if !self.eat_p('(') {
            return Ok((None, None));
        }
        let a = self.number()?;
        let b = if self.eat_p(',') {
            Some(self.number()?)
        } else {
            None
        };
        if !self.eat_p(')') {
            return Err(format!("expected ) at {}", self.near()));
        }
        Ok((Some(a), b))
    }

    fn col_type(&mut self) -> Result<ColType, String> {
        let first = match self.peek() {
            Some(Tok::Word(w)) => w.to_ascii_lowercase(),
            _ => return Err(format!("expected a column type at {}", self.near())),
        };
        self.i += 1;
        let mut name = alias(&first).to_string();
        let serial = first == "serial";
        if first == "double" {
            self.eat("PRECISION");
        } else if first == "national" {
            name = alias(&self.ident()?.to_ascii_lowercase()).to_string();
        } else if first == "long" {
            name = if self.eat("VARBINARY") {
                "mediumblob".into()
            } else {
                self.eat("VARCHAR");
                "mediumtext".into()
            };
        }
        if (name == "char" || name == "varchar") && self.eat("VARYING") {
            name = "varchar".into();
        }
        if !TYPES.contains(&name.as_str()) {
            return Err(format!("column type {first} is not in the type mapping"));
        }
        let mut labels = Vec::new();
        let (mut prec, mut scale) = (None, None);
        if name == "enum" || name == "set" {
            if !self.eat_p('(') {
                return Err(format!("expected ( at {}", self.near()));
            }
            loop {
                match self.peek() {
                    Some(Tok::Str(s)) => labels.push(s.clone()),
                    _ => return Err(format!("expected a label at {}", self.near())),
                }
                self.i += 1;
                if !self.eat_p(',') {
                    break;
                }
            }
            if !self.eat_p(')') {
                return Err(format!("expected ) at {}", self.near()));
            }
        } else {
            let (a, b) = self.type_args()?;
            match name.as_str() {
                "decimal" => {
                    prec = Some(a.unwrap_or(10));
                    scale = Some(b.unwrap_or(0));
                }
                "float" if b.is_none() && a.is_some_and(|p| p > 24) => name = "double".into(),
                "datetime" | "timestamp" | "time" => scale = Some(a.unwrap_or(0)),
                _ => {}
            }
        }
        let mut column_type = name.clone();
        loop {
            if self.eat("UNSIGNED") || serial {
                column_type.push_str(" unsigned");
                if serial {
                    break;
                }
            } else if !(self.eat("SIGNED") || self.eat("ZEROFILL")) {
                break;
            }
        }
        Ok(ColType {
            data_type: name,
            column_type,
            prec,
            scale,
            labels,
        })
    }

    /// A column definition up to the end of its clause (`,` or `)`).
    pub(super) fn column_def(&mut self) -> Result<ColDef, String> {
        let serial = self.at("SERIAL");
        let ty = self.col_type()?;
        let mut def = ColDef {
            ty,
            not_null: serial,
            default: None,
            auto_increment: serial,
            primary: false,
        };
        loop {
            match self.peek() {
                None | Some(Tok::P(',')) | Some(Tok::P(')')) => break,
                _ => {}
            }
            if self.eat("NOT") {
                self.expect("NULL")?;
                def.not_null = true;
            } else if self.eat("NULL") {
                def.not_null = false;
            } else if self.eat("DEFAULT") {
                def.default = Some(self.default_value(Some(&def.ty))?);
            } else if self.eat("AUTO_INCREMENT") {
                def.auto_increment = true;
            } else if self.eat("PRIMARY") {
                self.expect("KEY")?;
                def.primary = true;
                def.not_null = true;
            } else if self.eat("KEY") {
                def.primary = true;
                def.not_null = true;
            } else if self.eat("UNIQUE") {
                self.eat("KEY");
                self.out.ignored.push("UNIQUE (column attribute)".into());
            } else if self.eat("COMMENT") || self.eat("COLUMN_FORMAT") || self.eat("STORAGE") {
                self.i += 1;
            } else if self.eat("COLLATE") || self.eat("CHARSET") {
                self.eat_p('=');
                self.i += 1;
            } else if self.eat("CHARACTER") {
                self.expect("SET")?;
                self.eat_p('=');
                self.i += 1;
            } else if self.eat("ON") {
                self.expect("UPDATE")?;
                self.i += 1;
                self.skip_parens();
            } else if self.at_any(&[
                "BINARY",
                "ASCII",
                "UNICODE",
                "VISIBLE",
                "INVISIBLE",
                "FIRST",
            ]) {
                self.i += 1;
            } else if self.eat("AFTER") {
                self.ident()?;
            } else if self.at("CHECK") || self.at("REFERENCES") || self.at("CONSTRAINT") {
                let from = self.i;
                self.i += 1;
                while !matches!(self.peek(), None | Some(Tok::P(',')) | Some(Tok::P(')'))) {
                    if self.peek() == Some(&Tok::P('(')) {
                        self.skip_parens();
                    } else {
                        self.i += 1;
                    }
                }
                let text: Vec<String> = self.t[from..self.i].iter().map(Tok::text).collect();
                self.out.ignored.push(text.join(" "));
            } else if self.at_any(&["GENERATED", "AS", "VIRTUAL", "PERSISTENT", "STORED"]) {
                return Err("generated columns are not replayed".into());
            } else {
                return Err(format!(
                    "column attribute at {} is not understood",
                    self.near()
                ));
            }
        }
        Ok(def)
    }

    /// A DEFAULT value as a PostgreSQL expression, for a column of type
    /// `ty` (`None`: ALTER COLUMN … SET DEFAULT, type unknown).
    pub(super) fn default_value(&mut self, ty: Option<&ColType>) -> Result<String, String> {
        let bytea = ty.is_some_and(|t| t.pg() == "bytea");
        let tok = self
            .peek()
            .cloned()
            .ok_or_else(|| "DEFAULT without a value".to_string())?;
        self.i += 1;
        let out = match tok {
            Tok::Word(w) if w.eq_ignore_ascii_case("NULL") => "NULL".into(),
            Tok::Word(w) if w.eq_ignore_ascii_case("TRUE") => "1".into(),
            Tok::Word(w) if w.eq_ignore_ascii_case("FALSE") => "0".into(),
            Tok::Word(w)
                if ["CURRENT_TIMESTAMP", "NOW", "LOCALTIME", "LOCALTIMESTAMP"]
                    .iter()
                    .any(|f| w.eq_ignore_ascii_case(f)) =>
            {
                self.skip_parens();
                "CURRENT_TIMESTAMP".into()
            }
            Tok::Word(w)
                if w.eq_ignore_ascii_case("CURRENT_DATE") || w.eq_ignore_ascii_case("CURDATE") =>
            {
                self.skip_parens();
                "CURRENT_DATE".into()
            }
            Tok::Str(s) if bytea => {
                hex_bytea(&s.bytes().map(|b| format!("{b:02x}")).collect::<String>())
            }
            Tok::Str(s) => lit(Dialect::Postgres, &s),
            Tok::Num(n) => n,
            Tok::P(sign @ ('-' | '+')) => match self.peek() {
                Some(Tok::Num(n)) => {
                    self.i += 1;
                    format!("{sign}{n}")
                }
                _ => return Err(format!("DEFAULT {sign} {} is not understood", self.near())),
            },
            Tok::Hex(h) if bytea => hex_bytea(&h),
            Tok::Hex(h) => u64::from_str_radix(&h, 16)
                .map(|v| v.to_string())
                .map_err(|_| format!("DEFAULT X'{h}' on a non-binary column"))?,
            Tok::Bit(b) => u64::from_str_radix(&b, 2)
                .map(|v| v.to_string())
                .map_err(|_| format!("DEFAULT b'{b}' does not fit"))?,
            other => {
                return Err(format!(
                    "DEFAULT {} is not translated (only literals, NULL and CURRENT_TIMESTAMP)",
                    other.text()
                ))
            }
        };
        Ok(out)
    }
}

fn hex_bytea(h: &str) -> String {
    format!("'\\x{h}'")
}

/// Adds a primary key unless the table has one (so a replay passes).
pub(super) fn add_primary_key(t: &str, cols: &str) -> String {
    format!(
        "DO $sluice$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {}::regclass \
         AND contype = 'p') THEN ALTER TABLE {t} ADD PRIMARY KEY ({cols}); END IF; END $sluice$",
        lit(Dialect::Postgres, t)
    )
}

/// Drops the primary key whatever its constraint's name.
pub(super) fn drop_primary_key(t: &str) -> String {
    format!(
        "DO $sluice$ DECLARE n text; BEGIN SELECT conname INTO n FROM pg_constraint \
         WHERE conrelid = {tl}::regclass AND contype = 'p'; IF n IS NOT NULL THEN \
         EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', {tl}::regclass, n); END IF; END $sluice$",
        tl = lit(Dialect::Postgres, t)
    )
}
