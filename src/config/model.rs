//! The semantic model inside a dataset's config: joins, measures, calculated fields,
//! dimensions, hierarchies and column docs, resolved and checked for what can be checked
//! without the data (names, kinds, references between them). What needs the data's
//! columns and types is checked when the dataset is planned (`semantic`).

use std::collections::HashSet;

use toml::Spanned;

use super::{file, Origin, Resolver};

/// A many-to-one join from a dataset's table to a dimension table.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// The dimension table.
    pub table: String,
    /// Its source, when not the dataset's own.
    pub source: Option<String>,
    /// Key column of the table it joins from.
    pub key: String,
    /// The table holding `key`: `None` for the dataset's table, else an earlier join's
    /// table (a snowflake).
    pub from: Option<String>,
    /// Key column of the dimension table.
    pub dimension_key: String,
    /// INNER rather than LEFT.
    pub inner: bool,
    /// Dimension columns shown; `None` = all but the key.
    pub columns: Option<Vec<String>>,
    /// Where it was declared.
    pub origin: Origin,
}

/// A dimension: a column (or calculated field) with a type that tools can use.
#[derive(Debug, Clone)]
pub struct DimensionConfig {
    /// The column it describes.
    pub name: String,
    /// Plain, time or geo.
    pub kind: DimensionKind,
    /// Description for tools.
    pub description: String,
    /// Display name.
    pub label: String,
    /// Where it was declared.
    pub origin: Origin,
}

/// The type of a dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimensionKind {
    /// No special meaning.
    Plain,
    /// A date or timestamp, offered at these granularities as `<name>_<granularity>` columns;
    /// empty means every granularity that fits the column's type.
    Time(Vec<Granularity>),
    /// A place, with its role.
    Geo(GeoRole),
}

/// Time granularities of a time dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Calendar year.
    Year,
    /// Calendar quarter.
    Quarter,
    /// Calendar month.
    Month,
    /// ISO week (starting Monday).
    Week,
    /// Day.
    Day,
    /// Hour (timestamps only).
    Hour,
}

impl Granularity {
    /// All granularities, coarsest first.
    pub const ALL: [Granularity; 6] = [
        Granularity::Year,
        Granularity::Quarter,
        Granularity::Month,
        Granularity::Week,
        Granularity::Day,
        Granularity::Hour,
    ];

    /// The config and column-suffix spelling, also `date_trunc`'s.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Year => "year",
            Granularity::Quarter => "quarter",
            Granularity::Month => "month",
            Granularity::Week => "week",
            Granularity::Day => "day",
            Granularity::Hour => "hour",
        }
    }
}

/// The role of a geo dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoRole {
    /// Country.
    Country,
    /// Province or state.
    Province,
    /// City.
    City,
    /// Latitude in degrees.
    Latitude,
    /// Longitude in degrees.
    Longitude,
}

impl GeoRole {
    const ALL: [GeoRole; 5] = [
        GeoRole::Country,
        GeoRole::Province,
        GeoRole::City,
        GeoRole::Latitude,
        GeoRole::Longitude,
    ];

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            GeoRole::Country => "country",
            GeoRole::Province => "province",
            GeoRole::City => "city",
            GeoRole::Latitude => "latitude",
            GeoRole::Longitude => "longitude",
        }
    }
}

/// A hierarchy (层次结构): dimensions from the coarsest to the finest.
#[derive(Debug, Clone)]
pub struct HierarchyConfig {
    /// Hierarchy name.
    pub name: String,
    /// Dimension names, coarsest first.
    pub levels: Vec<String>,
    /// Description for tools.
    pub description: String,
    /// Display name.
    pub label: String,
    /// Where it was declared.
    pub origin: Origin,
}

/// A calculated field: a column computed by a SQL expression over the dataset's columns
/// and other fields.
#[derive(Debug, Clone)]
pub struct FieldConfig {
    /// Column name.
    pub name: String,
    /// The SQL expression.
    pub expr: String,
    /// Description for tools.
    pub description: String,
    /// Display name.
    pub label: String,
    /// Where it was declared.
    pub origin: Origin,
}

/// A measure: a named aggregate of one column of its dataset.
#[derive(Debug, Clone)]
pub struct MeasureConfig {
    /// Name used in `MEASURE(name)`.
    pub name: String,
    /// What the measure computes.
    pub definition: MeasureDef,
    /// Description for tools.
    pub description: String,
    /// Display name.
    pub label: String,
    /// Where it was declared.
    pub origin: Origin,
}

/// What a measure computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeasureDef {
    /// An aggregate of one column (`None` = count rows).
    Aggregate {
        /// How rows are aggregated.
        agg: Aggregation,
        /// The column aggregated.
        column: Option<String>,
    },
    /// An expression over other measures, e.g. `MEASURE(profit) / MEASURE(revenue)`.
    Derived(String),
}

/// The aggregations a measure can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// `sum(column)`.
    Sum,
    /// `count(column)`, or `count(*)` without a column.
    Count,
    /// `count(DISTINCT column)`: never re-aggregated from partial results.
    CountDistinct,
    /// `avg(column)`.
    Avg,
    /// `min(column)`.
    Min,
    /// `max(column)`.
    Max,
}

impl Aggregation {
    /// Parse the config spelling.
    pub fn parse(text: &str) -> Option<Aggregation> {
        Some(match text {
            "sum" => Aggregation::Sum,
            "count" => Aggregation::Count,
            "count_distinct" => Aggregation::CountDistinct,
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            _ => return None,
        })
    }

    /// The config spelling, as listed in `biproxy.measures`.
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Count => "count",
            Aggregation::CountDistinct => "count_distinct",
            Aggregation::Avg => "avg",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
        }
    }
}

/// A column's label and description.
#[derive(Debug, Clone)]
pub struct ColumnDoc {
    /// Column name.
    pub name: String,
    /// Description for tools.
    pub description: String,
    /// Display name.
    pub label: String,
    /// Roles for which the column does not exist.
    pub hidden_from: Vec<super::Role>,
    /// Roles that see `mask` instead of the value.
    pub masked_for: Vec<super::Role>,
    /// The expression shown to `masked_for`.
    pub mask: Option<String>,
    /// Where it was declared.
    pub origin: Origin,
}

impl Resolver<'_> {
    pub(super) fn measures(
        &mut self,
        ms: &[file::MeasureSection],
        dataset: usize,
    ) -> Vec<MeasureConfig> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (j, m) in ms.iter().enumerate() {
            let field = format!("dataset[{dataset}].measure[{j}]");
            if !seen.insert(m.name.get_ref().to_lowercase()) {
                self.error(
                    &m.name,
                    format!("{field}.name"),
                    format!("duplicate measure \"{}\"", m.name.get_ref()),
                );
            }
            let Some(definition) = self.measure_definition(m, &field) else {
                continue;
            };
            out.push(MeasureConfig {
                name: m.name.get_ref().to_lowercase(),
                definition,
                description: m.description.clone(),
                label: m.label.clone(),
                origin: self.origin(m.column.as_ref().or(m.expr.as_ref()).unwrap_or(&m.name)),
            });
        }
        out
    }
}

impl Resolver<'_> {
    fn measure_definition(&mut self, m: &file::MeasureSection, field: &str) -> Option<MeasureDef> {
        match (&m.agg, &m.expr) {
            (Some(agg_text), None) => {
                let Some(agg) = Aggregation::parse(agg_text.get_ref()) else {
                    self.error(
                        agg_text,
                        format!("{field}.agg"),
                        format!(
                            "unknown aggregation \"{}\"; use sum, count, count_distinct, avg, min or max",
                            agg_text.get_ref()
                        ),
                    );
                    return None;
                };
                if m.column.is_none() && agg != Aggregation::Count {
                    self.error(
                        &m.name,
                        format!("{field}.column"),
                        format!("`{}` needs a column", agg.name()),
                    );
                    return None;
                }
                Some(MeasureDef::Aggregate {
                    agg,
                    column: m.column.as_ref().map(|c| c.get_ref().to_lowercase()),
                })
            }
            (None, Some(expr)) if m.column.is_none() => {
                Some(MeasureDef::Derived(expr.get_ref().clone()))
            }
            _ => {
                self.error(
                    &m.name,
                    field.to_owned(),
                    "give either `agg` (with `column`) or `expr` over other measures",
                );
                None
            }
        }
    }

    pub(super) fn dimensions(
        &mut self,
        ds: &[file::DimensionSection],
        dataset: usize,
    ) -> Vec<DimensionConfig> {
        let mut out: Vec<DimensionConfig> = Vec::new();
        for (j, d) in ds.iter().enumerate() {
            let field = format!("dataset[{dataset}].dimension[{j}]");
            let name = d.name.get_ref().to_lowercase();
            if out.iter().any(|x| x.name == name) {
                self.error(
                    &d.name,
                    format!("{field}.name"),
                    format!("duplicate dimension \"{name}\""),
                );
            }
            let kind_text = d.kind.as_ref().map_or("plain", |k| k.get_ref().as_str());
            let kind = match kind_text {
                "plain" => DimensionKind::Plain,
                "time" => {
                    DimensionKind::Time(self.granularities(d.granularities.as_deref(), &field))
                }
                "geo" => match &d.geo_role {
                    Some(role) => match GeoRole::ALL
                        .into_iter()
                        .find(|r| r.name() == role.get_ref())
                    {
                        Some(r) => DimensionKind::Geo(r),
                        None => {
                            self.error(role, format!("{field}.geo_role"), format!("unknown geo role \"{}\"; use country, province, city, latitude or longitude", role.get_ref()));
                            continue;
                        }
                    },
                    None => {
                        self.error(
                            &d.name,
                            format!("{field}.geo_role"),
                            "a geo dimension needs `geo_role`",
                        );
                        continue;
                    }
                },
                other => {
                    let at = d.kind.as_ref().unwrap_or(&d.name);
                    self.error(
                        at,
                        format!("{field}.type"),
                        format!("unknown dimension type \"{other}\"; use plain, time or geo"),
                    );
                    continue;
                }
            };
            if kind_text != "time" && d.granularities.is_some() {
                self.error(
                    &d.name,
                    format!("{field}.granularities"),
                    "only a time dimension has granularities",
                );
            }
            if kind_text != "geo" && d.geo_role.is_some() {
                self.error(
                    &d.name,
                    format!("{field}.geo_role"),
                    "only a geo dimension has a geo_role",
                );
            }
            out.push(DimensionConfig {
                name,
                kind,
                description: d.description.clone(),
                label: d.label.clone(),
                origin: self.origin(&d.name),
            });
        }
        out
    }

    fn granularities(
        &mut self,
        given: Option<&[Spanned<String>]>,
        field: &str,
    ) -> Vec<Granularity> {
        let Some(given) = given else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for g in given {
            match Granularity::ALL
                .into_iter()
                .find(|x| x.name() == g.get_ref())
            {
                Some(x) if !out.contains(&x) => out.push(x),
                Some(_) => {}
                None => self.error(
                    g,
                    format!("{field}.granularities"),
                    format!(
                        "unknown granularity \"{}\"; use year, quarter, month, week, day or hour",
                        g.get_ref()
                    ),
                ),
            }
        }
        out
    }

    pub(super) fn hierarchies(
        &mut self,
        hs: &[file::HierarchySection],
        dimensions: &[DimensionConfig],
        dataset: usize,
    ) -> Vec<HierarchyConfig> {
        let mut out = Vec::new();
        for (j, h) in hs.iter().enumerate() {
            for (k, level) in h.levels.iter().enumerate() {
                let level_name = level.get_ref().to_lowercase();
                if !dimensions.iter().any(|d| d.name == level_name) {
                    self.error(
                        level,
                        format!("dataset[{dataset}].hierarchy[{j}].levels[{k}]"),
                        format!(
                            "no [[dataset.dimension]] named \"{}\" in this dataset",
                            level.get_ref()
                        ),
                    );
                }
            }
            if h.levels.len() < 2 {
                self.error(
                    &h.name,
                    format!("dataset[{dataset}].hierarchy[{j}].levels"),
                    "a hierarchy needs at least two levels",
                );
            }
            out.push(HierarchyConfig {
                name: h.name.get_ref().to_lowercase(),
                levels: h
                    .levels
                    .iter()
                    .map(|l| l.get_ref().to_lowercase())
                    .collect(),
                description: h.description.clone(),
                label: h.label.clone(),
                origin: self.origin(&h.name),
            });
        }
        out
    }

    pub(super) fn joins(
        &mut self,
        js: &[file::JoinSection],
        base: Option<&str>,
        dataset: usize,
    ) -> Vec<JoinConfig> {
        let mut out: Vec<JoinConfig> = Vec::new();
        for (j, join) in js.iter().enumerate() {
            let table = join.table.get_ref().to_lowercase();
            if Some(table.as_str()) == base || out.iter().any(|o| o.table == table) {
                self.error(
                    &join.table,
                    format!("dataset[{dataset}].join[{j}].table"),
                    format!("table \"{table}\" is already part of the dataset; each table can be joined once"),
                );
                continue;
            }
            let from = join.from.as_ref().map(|f| f.get_ref().to_lowercase());
            if let Some(f) = from.as_deref() {
                if Some(f) != base && !out.iter().any(|o| o.table == f) {
                    self.error(
                        join.from.as_ref().unwrap_or(&join.table),
                        format!("dataset[{dataset}].join[{j}].from"),
                        format!("\"{f}\" is neither the dataset's table nor a table joined before this one"),
                    );
                    continue;
                }
            }
            let inner = match join.kind.as_ref().map(|k| k.get_ref().as_str()) {
                None | Some("left") => false,
                Some("inner") => true,
                Some(other) => {
                    let at = join.kind.as_ref().unwrap_or(&join.table);
                    self.error(
                        at,
                        format!("dataset[{dataset}].join[{j}].type"),
                        format!("unknown join type \"{other}\"; use left or inner"),
                    );
                    continue;
                }
            };
            out.push(JoinConfig {
                table,
                from: from.filter(|f| Some(f.as_str()) != base),
                source: join.source.as_ref().map(|s| s.get_ref().clone()),
                key: join.key.get_ref().to_lowercase(),
                dimension_key: join
                    .dimension_key
                    .as_ref()
                    .unwrap_or(&join.key)
                    .get_ref()
                    .to_lowercase(),
                inner,
                columns: join
                    .columns
                    .as_ref()
                    .map(|cs| cs.iter().map(|c| c.get_ref().to_lowercase()).collect()),
                origin: self.origin(&join.table),
            });
        }
        out
    }

    pub(super) fn fields(&mut self, fs: &[file::FieldSection]) -> Vec<FieldConfig> {
        fs.iter()
            .map(|f| FieldConfig {
                name: f.name.get_ref().to_lowercase(),
                expr: f.expr.get_ref().clone(),
                description: f.description.clone(),
                label: f.label.clone(),
                origin: self.origin(&f.expr),
            })
            .collect()
    }
}
