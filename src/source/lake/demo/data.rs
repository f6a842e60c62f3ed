//! What the demo data contains: the geography, segments, categories and brands, and the
//! generators that turn a seed into customers, products, stores and orders.
//!
//! Kept apart from `demo/mod.rs`, which decides when to generate and how files are written,
//! so the shape of the data can be read (and changed) in one place.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PRODUCT_COUNT: usize = 200;
const STORE_COUNT: i64 = 60;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// (region, province, city, customer weight); East carries the most weight.
type Geo = (&'static str, &'static str, &'static str, u32);
const GEO: [Geo; 12] = [
    ("East", "上海", "上海", 16),
    ("East", "江苏", "南京", 12),
    ("East", "浙江", "杭州", 14),
    ("North", "北京", "北京", 12),
    ("North", "天津", "天津", 6),
    ("North", "河北", "石家庄", 4),
    ("South", "广东", "广州", 10),
    ("South", "广东", "深圳", 12),
    ("West", "四川", "成都", 8),
    ("West", "重庆", "重庆", 6),
    ("Central", "湖北", "武汉", 6),
    ("Central", "湖南", "长沙", 4),
];
const SEGMENTS: [(&str, u32); 3] = [("Consumer", 60), ("Corporate", 25), ("Small Business", 15)];
/// (category, brands, lowest and highest list price in whole yuan).
const CATEGORIES: [(&str, [&str; 2], i64, i64); 5] = [
    ("Electronics", ["Huawei", "Xiaomi"], 299, 7999),
    ("Home", ["Haier", "Midea"], 99, 4999),
    ("Apparel", ["Uniqlo", "Li-Ning"], 39, 899),
    ("Grocery", ["Nongfu", "Yili"], 3, 199),
    ("Sports", ["Anta", "Decathlon"], 49, 2999),
];
/// The department and manager of each category: the `categories` table, joined from
/// `products` (a snowflake).
const DEPARTMENTS: [(&str, &str, &str); 5] = [
    ("Electronics", "Durables", "王芳"),
    ("Home", "Durables", "李伟"),
    ("Apparel", "Lifestyle", "张敏"),
    ("Grocery", "Daily Goods", "刘洋"),
    ("Sports", "Lifestyle", "陈静"),
];
/// Discount percentages of discounted orders (unit price factor 0.80..=0.95).
const DISCOUNT_PCTS: [i128; 4] = [5, 10, 15, 20];

const fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("invalid constant date"),
    }
}
const fn epoch_days(date: NaiveDate) -> i32 {
    date.signed_duration_since(ymd(1970, 1, 1)).num_days() as i32
}
const ORDER_FIRST_DAY: i32 = epoch_days(ymd(2023, 1, 1));
const ORDER_LAST_DAY: i32 = epoch_days(ymd(2024, 12, 31));
const SIGNUP_FIRST_DAY: i32 = epoch_days(ymd(2019, 1, 1));
const SIGNUP_LAST_DAY: i32 = epoch_days(ymd(2024, 6, 30));

/// One generator per table (seed + index in [`TABLES`]) keeps tables independent.
fn table_rng(seed: u64, table: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_add(table))
}

fn weighted_index(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let mut roll = rng.gen_range(0..weights.iter().sum::<u32>());
    for (i, &weight) in weights.iter().enumerate() {
        if roll < weight {
            return i;
        }
        roll -= weight;
    }
    weights.len() - 1
}

/// Builds a batch from named columns; `discount` is the only nullable column.
fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, ArrowError> {
    let columns = columns
        .into_iter()
        .map(|(name, array)| (name, array, name == "discount"));
    RecordBatch::try_from_iter_with_nullable(columns)
}

fn strings<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn decimal(values: Vec<i128>, precision: u8) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(
        Decimal128Array::from(values).with_precision_and_scale(precision, 2)?,
    ))
}

/// Region, province and city columns for the given indexes into [`GEO`].
fn geo_columns(picks: &[usize]) -> [(&'static str, ArrayRef); 3] {
    let column = |part: fn(&Geo) -> &'static str| strings(picks.iter().map(|&i| part(&GEO[i])));
    [
        ("region", column(|g| g.0)),
        ("province", column(|g| g.1)),
        ("city", column(|g| g.2)),
    ]
}

pub(super) fn customers_batch(seed: u64, count: i64) -> Result<RecordBatch, ArrowError> {
    let mut rng = table_rng(seed, 1);
    let geo_weights: Vec<u32> = GEO.iter().map(|g| g.3).collect();
    let segment_weights: Vec<u32> = SEGMENTS.iter().map(|s| s.1).collect();
    let rows: Vec<(usize, usize, i32)> = (0..count)
        .map(|_| {
            let geo = weighted_index(&mut rng, &geo_weights);
            let segment = weighted_index(&mut rng, &segment_weights);
            (
                geo,
                segment,
                rng.gen_range(SIGNUP_FIRST_DAY..=SIGNUP_LAST_DAY),
            )
        })
        .collect();
    let picks: Vec<usize> = rows.iter().map(|r| r.0).collect();
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        (
            "customer_id",
            Arc::new(Int64Array::from_iter_values(1..=count)),
        ),
        (
            "customer_name",
            strings((1..=count).map(|id| format!("客户 {id:05}"))),
        ),
        ("segment", strings(rows.iter().map(|r| SEGMENTS[r.1].0))),
    ];
    columns.extend(geo_columns(&picks));
    let signup = Date32Array::from_iter_values(rows.iter().map(|r| r.2));
    columns.push(("signup_date", Arc::new(signup)));
    batch(columns)
}

/// A product as the order generator needs it: prices and cost ratio stay in integers so
/// `amount` and `cost` are exact and reproducible.
pub(super) struct Product {
    id: i64,
    name: String,
    category: &'static str,
    brand: &'static str,
    price_cents: i128,
    cost_permille: i128,
}

pub(super) fn catalog(seed: u64) -> Vec<Product> {
    let mut rng = table_rng(seed, 2);
    (0..PRODUCT_COUNT)
        .map(|i| {
            let (category, brands, low, high) = CATEGORIES[i % CATEGORIES.len()];
            let brand = brands[rng.gen_range(0..brands.len())];
            let price_cents = i128::from(rng.gen_range(low..=high)) * 100 - 1;
            let cost_permille = i128::from(rng.gen_range(550_i64..=850));
            let id = i as i64 + 1;
            let name = format!("{brand} {category} {id}");
            Product {
                id,
                name,
                category,
                brand,
                price_cents,
                cost_permille,
            }
        })
        .collect()
}

pub(super) fn products_batch(products: &[Product]) -> Result<RecordBatch, ArrowError> {
    batch(vec![
        (
            "product_id",
            Arc::new(Int64Array::from_iter_values(products.iter().map(|p| p.id))),
        ),
        (
            "product_name",
            strings(products.iter().map(|p| p.name.as_str())),
        ),
        ("category", strings(products.iter().map(|p| p.category))),
        ("brand", strings(products.iter().map(|p| p.brand))),
        (
            "list_price",
            decimal(products.iter().map(|p| p.price_cents).collect(), 12)?,
        ),
    ])
}

pub(super) fn categories_batch() -> Result<RecordBatch, ArrowError> {
    batch(vec![
        ("category", strings(DEPARTMENTS.iter().map(|d| d.0))),
        ("department", strings(DEPARTMENTS.iter().map(|d| d.1))),
        ("category_manager", strings(DEPARTMENTS.iter().map(|d| d.2))),
    ])
}

pub(super) fn stores_batch(seed: u64) -> Result<RecordBatch, ArrowError> {
    let mut rng = table_rng(seed, 3);
    let ids: Vec<i64> = (1..=STORE_COUNT).collect();
    let picks: Vec<usize> = (0..ids.len()).map(|i| i % GEO.len()).collect();
    let channels: Vec<&str> = ids
        .iter()
        .map(|_| {
            if rng.gen_bool(0.25) {
                "Online"
            } else {
                "Retail"
            }
        })
        .collect();
    let names = ids
        .iter()
        .zip(&picks)
        .map(|(id, &g)| format!("{}店 {id}", GEO[g].2));
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        (
            "store_id",
            Arc::new(Int64Array::from_iter_values(ids.iter().copied())),
        ),
        ("store_name", strings(names)),
        ("channel", strings(channels)),
    ];
    columns.extend(geo_columns(&picks));
    batch(columns)
}

/// Column buffers of one batch of orders.
#[derive(Default)]
struct OrderColumns {
    order_id: Vec<i64>,
    order_date: Vec<i32>,
    order_ts: Vec<i64>,
    customer_id: Vec<i64>,
    product_id: Vec<i64>,
    store_id: Vec<i64>,
    quantity: Vec<i32>,
    unit_price: Vec<i128>,
    amount: Vec<i128>,
    cost: Vec<i128>,
    discount: Vec<Option<f64>>,
}

impl OrderColumns {
    fn into_batch(self) -> Result<RecordBatch, ArrowError> {
        let order_ts = TimestampMicrosecondArray::from(self.order_ts).with_timezone("UTC");
        batch(vec![
            ("order_id", Arc::new(Int64Array::from(self.order_id))),
            ("order_date", Arc::new(Date32Array::from(self.order_date))),
            ("order_ts", Arc::new(order_ts)),
            ("customer_id", Arc::new(Int64Array::from(self.customer_id))),
            ("product_id", Arc::new(Int64Array::from(self.product_id))),
            ("store_id", Arc::new(Int64Array::from(self.store_id))),
            ("quantity", Arc::new(Int32Array::from(self.quantity))),
            ("unit_price", decimal(self.unit_price, 12)?),
            ("amount", decimal(self.amount, 14)?),
            ("cost", decimal(self.cost, 14)?),
            ("discount", Arc::new(Float64Array::from(self.discount))),
        ])
    }
}

/// Streams orders; one generator across all batches keeps the sequence reproducible.
pub(super) struct OrderGen<'a> {
    rng: ChaCha8Rng,
    products: &'a [Product],
    customers: i64,
}

impl<'a> OrderGen<'a> {
    /// Orders drawing from `products` and customer ids `1..=customers`.
    pub(super) fn new(seed: u64, products: &'a [Product], customers: i64) -> OrderGen<'a> {
        OrderGen {
            rng: table_rng(seed, 0),
            products,
            customers,
        }
    }

    /// Orders `first_id..first_id + rows`.
    pub(super) fn batch(&mut self, first_id: i64, rows: i64) -> Result<RecordBatch, ArrowError> {
        let mut cols = OrderColumns::default();
        for order_id in first_id..first_id + rows {
            self.push_order(&mut cols, order_id);
        }
        cols.into_batch()
    }

    fn push_order(&mut self, cols: &mut OrderColumns, order_id: i64) {
        let rng = &mut self.rng;
        let day = rng.gen_range(ORDER_FIRST_DAY..=ORDER_LAST_DAY);
        let time_of_day = rng.gen_range(0..MICROS_PER_DAY / 1_000_000) * 1_000_000;
        let product = &self.products[rng.gen_range(0..self.products.len())];
        let quantity = rng.gen_range(1_i32..=10);
        let pct = rng
            .gen_bool(0.3)
            .then(|| DISCOUNT_PCTS[rng.gen_range(0..DISCOUNT_PCTS.len())]);
        let unit_price = (product.price_cents * (100 - pct.unwrap_or(0)) + 50) / 100;
        let amount = unit_price * i128::from(quantity);
        cols.order_id.push(order_id);
        cols.order_date.push(day);
        cols.order_ts
            .push(i64::from(day) * MICROS_PER_DAY + time_of_day);
        cols.customer_id.push(rng.gen_range(1..=self.customers));
        cols.product_id.push(product.id);
        cols.store_id.push(rng.gen_range(1..=STORE_COUNT));
        cols.quantity.push(quantity);
        cols.unit_price.push(unit_price);
        cols.amount.push(amount);
        cols.cost
            .push((amount * product.cost_permille + 500) / 1000);
        cols.discount.push(pct.map(|p| p as f64 / 100.0));
    }
}
