//! The seeded customer book, derived deterministically from `(seed, index)`.
//!
//! Customer `i` is a pure function of the seed and `i`, so `seed` can write customers in any batch order and
//! `run` can pick a known caller, an ambiguous one or an unknown one without reading the database or a side
//! file: it only needs the same `--seed` and the number of customers (which it probes from the server).
//!
//! - Every customer has a unique US phone, a customer number `C000000042` (index 42) and usually an email and
//!   sometimes a chat handle.
//! - Households: in every block of [`HOUSEHOLD_BLOCK`] customers, the first three share one extra phone and the
//!   next two share another, so a call from such a phone matches 3 or 2 customers (ambiguous callers).
//! - Unknown callers get phones from a range no customer has.
//! - About a fifth of the customers have a journey: 1 to 4 activities, half of them under a request.

use std::collections::BTreeMap;

use customer_context::{
    domain::{
        activity::{Activity, ActivityData},
        contact::{ContactKind, ContactPoint},
        customer::{Audit, Customer, CustomerData},
        fold,
        request::{Request, RequestData, RequestStatus},
        time::Micros,
    },
    store::seed::SeedCustomer,
};
use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

/// The largest book supported (phone ranges and creation times are laid out for it).
pub const MAX_CUSTOMERS: u64 = 50_000_000;
/// Customers per household block (see the module documentation).
pub const HOUSEHOLD_BLOCK: u64 = 50;
/// The agent recorded as creator of seeded records.
pub const SEED_AGENT: &str = "loadgen-seed";

/// 2020-01-01T00:00:00Z; customer `i` was created about `i * 3` seconds later (50M customers span 4.75 years).
const BASE_TIME: Micros = 1_577_836_800_000_000;
const CREATE_STEP: Micros = 3_000_000;
const DAY: Micros = 86_400_000_000;

const AREA_CODES: [u16; 40] = [
    202, 206, 212, 213, 214, 215, 216, 217, 303, 310, 312, 313, 314, 323, 347, 404, 408, 412, 415,
    469, 480, 503, 504, 512, 602, 617, 619, 646, 702, 704, 713, 718, 720, 773, 786, 801, 818, 857,
    917, 919,
];
/// Exchanges 200-999 except N11 service codes and 555: 791 of them.
const EXCHANGES: u64 = 791;
const LINES: u64 = 10_000;
/// Size of the phone-number space: 316,400,000.
const PHONE_SPACE: u64 = AREA_CODES.len() as u64 * EXCHANGES * LINES;
/// Phone-space regions (before scrambling): customers' own phones, household phones, numbers nobody has.
const HOUSEHOLD_PHONES_FROM: u64 = 100_000_000;
const UNKNOWN_PHONES_FROM: u64 = 200_000_000;
const UNKNOWN_PHONES: u64 = 100_000_000;
/// Prime, and so coprime with PHONE_SPACE (2^7 * 5^5 * 7 * 113): scrambling is a bijection.
const SCRAMBLE: u64 = 2_654_435_761;

const FIRST_NAMES: &[&str] = &[
    "Ana",
    "José",
    "María",
    "Zoë",
    "François",
    "Søren",
    "Łukasz",
    "Björn",
    "Chloé",
    "Renée",
    "Ángel",
    "Noémie",
    "Jürgen",
    "Inês",
    "João",
    "Dvořák",
    "Çağla",
    "Siobhán",
    "Ærin",
    "Mateo",
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Ethan",
    "Sophia",
    "Lucas",
    "Mia",
    "James",
    "Amelia",
    "Benjamin",
    "Harper",
    "Elijah",
    "Evelyn",
    "Oliver",
    "Abigail",
    "Daniel",
    "Emily",
    "Henry",
    "Ella",
    "Samuel",
    "Grace",
    "David",
    "Chen",
    "Wei",
    "Yuki",
    "Hiroshi",
    "Priya",
    "Arjun",
    "Fatima",
    "Omar",
    "Aisha",
    "Kwame",
    "Nia",
    "Dmitri",
    "Olga",
    "Ana María",
    "Jean-Luc",
    "Mary Ann",
];
const LAST_NAMES: &[&str] = &[
    "García",
    "Núñez",
    "Müller",
    "Ødegaard",
    "Dvořák",
    "O'Brien",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Rodríguez",
    "Martínez",
    "Hernández",
    "López",
    "González",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Pérez",
    "Thompson",
    "White",
    "Harris",
    "Sánchez",
    "Clark",
    "Ramírez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Schäfer",
    "Lefèvre",
    "Kowalczyk",
    "Søndergaard",
    "De la Cruz",
];
const COMPANIES: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Logistics",
    "Wayne Foods",
    "Müller GmbH",
    "Société Générale de Café",
    "Ñandú Textiles",
    "Blue Harbor Insurance",
    "Northwind Traders",
    "Contoso Bank",
    "Fabrikam",
    "Tailspin Toys",
    "Wingtip Travel",
    "Lakeshore Dental",
    "Pinecrest Realty",
    "Summit Outdoor",
    "Bright Path Schools",
    "Golden Gate Bakery",
];
const TAGS: &[&str] = &[
    "vip",
    "newsletter",
    "wholesale",
    "churn-risk",
    "enterprise",
    "beta",
    "spanish",
    "do-not-call",
    "partner",
    "late-payer",
];
const EMAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];
pub const TOPICS: &[&str] = &[
    "Billing question",
    "Delivery delayed",
    "Password reset",
    "Cancel subscription",
    "Upgrade plan",
    "Damaged item",
    "Refund status",
    "Address change",
    "Technical issue",
    "Complaint",
];
const NOTES: &[&str] = &[
    "",
    "",
    "",
    "Prefers email.",
    "Call after 5pm.",
    "Speaks Spanish and English.",
    "Long-time customer.",
];
const CHANNELS: &[i32] = &[1, 1, 1, 2, 2, 3, 4]; // voice-heavy: VOICE, CHAT, EMAIL, SMS

/// How many agents the generated traffic is spread over (`agent-001` ...).
pub const AGENTS: u64 = 200;

/// The deterministic book of `customers` customers made from `seed`.
#[derive(Clone, Copy, Debug)]
pub struct Book {
    pub seed: u64,
    pub customers: u64,
}

impl Book {
    pub fn new(seed: u64, customers: u64) -> Self {
        Book { seed, customers }
    }

    /// Customer `i` (any `i` below [`MAX_CUSTOMERS`], also beyond `customers`) with its journey.
    pub fn customer(&self, i: u64) -> SeedCustomer {
        let mut rng = rng_for(self.seed, i);
        let first = *FIRST_NAMES.choose(&mut rng).unwrap_or(&"Ana");
        let last = *LAST_NAMES.choose(&mut rng).unwrap_or(&"García");
        let company = if rng.random_bool(0.4) {
            COMPANIES.choose(&mut rng).copied().unwrap_or_default()
        } else {
            ""
        };
        let gender = ["", "", "female", "male"]
            .choose(&mut rng)
            .copied()
            .unwrap_or_default();

        let mut contact_points = vec![ContactPoint {
            kind: ContactKind::Phone,
            label: "mobile".to_owned(),
            value: self.phone(i),
        }];
        if let Some(household) = household_of(i).filter(|_| self.household_complete(i)) {
            contact_points.push(ContactPoint {
                kind: ContactKind::Phone,
                label: "home".to_owned(),
                value: self.household_phone(household),
            });
        }
        if rng.random_bool(0.9) {
            let domain = EMAIL_DOMAINS.choose(&mut rng).copied().unwrap_or_default();
            contact_points.push(ContactPoint {
                kind: ContactKind::Email,
                label: "personal".to_owned(),
                value: format!("{}.{}.{i}@{domain}", slug(first), slug(last)),
            });
        }
        if rng.random_bool(0.25) {
            contact_points.push(ContactPoint {
                kind: ContactKind::Chat,
                label: "web chat".to_owned(),
                value: format!("{}{}_{i}", slug(first), slug(last)),
            });
        }

        let mut tags: Vec<String> = Vec::new();
        for _ in 0..rng.random_range(0..=3) {
            let tag = TAGS.choose(&mut rng).copied().unwrap_or_default();
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_owned());
            }
        }
        let mut attributes = BTreeMap::new();
        if rng.random_bool(0.3) {
            let segment = ["consumer", "smb", "enterprise"]
                .choose(&mut rng)
                .copied()
                .unwrap_or_default();
            attributes.insert("segment".to_owned(), segment.to_owned());
        }
        let notes = NOTES.choose(&mut rng).copied().unwrap_or_default();
        let credit_hold = rng.random_bool(0.02);

        let create_time = BASE_TIME + i as Micros * CREATE_STEP + rng.random_range(0..CREATE_STEP);
        let update_time = create_time + rng.random_range(0..90 * DAY);
        let id = time_ordered_id(&mut rng, create_time);
        let audit = |at: Micros| Audit {
            create_time: at,
            update_time: at,
            created_by: SEED_AGENT.to_owned(),
            updated_by: SEED_AGENT.to_owned(),
        };

        let mut requests = Vec::new();
        let mut activities = Vec::new();
        if rng.random_bool(0.2) {
            let request = rng.random_bool(0.5).then(|| {
                let at = create_time + rng.random_range(1..365) * DAY;
                let status = match rng.random_range(0..10) {
                    0..6 => RequestStatus::Open,
                    6 => RequestStatus::Pending,
                    _ => RequestStatus::Closed,
                };
                Request {
                    id: time_ordered_id(&mut rng, at),
                    version: 1,
                    customer_id: id.clone(),
                    data: RequestData {
                        title: TOPICS
                            .choose(&mut rng)
                            .copied()
                            .unwrap_or_default()
                            .to_owned(),
                        description: "Seeded request.".to_owned(),
                        status,
                        tags: Vec::new(),
                    },
                    close_time: (status == RequestStatus::Closed).then_some(at + DAY),
                    audit: audit(at),
                }
            });
            for _ in 0..rng.random_range(1..=4) {
                let at = create_time + rng.random_range(1..400) * DAY;
                let channel = CHANNELS.choose(&mut rng).copied().unwrap_or(1);
                activities.push(Activity {
                    id: time_ordered_id(&mut rng, at),
                    version: 1,
                    data: ActivityData {
                        customer_id: Some(id.clone()),
                        request_id: request.as_ref().map(|r| r.id.clone()),
                        channel,
                        direction: 1,
                        internal: false,
                        topic: TOPICS
                            .choose(&mut rng)
                            .copied()
                            .unwrap_or_default()
                            .to_owned(),
                        notes: "Seeded interaction.".to_owned(),
                        tags: Vec::new(),
                        occur_time: at,
                        follow_up_time: None,
                        entered_by: agent_name(rng.random_range(0..AGENTS)),
                        contact_name: format!("{first} {last}"),
                        contact_phone: self.phone(i),
                        contact_email: String::new(),
                        sales_contact: String::new(),
                        salesperson: String::new(),
                        reference: String::new(),
                    },
                    audit: audit(at),
                });
            }
            requests.extend(request);
        }

        SeedCustomer {
            customer: Customer {
                id,
                version: 1,
                data: CustomerData {
                    first_name: first.to_owned(),
                    last_name: last.to_owned(),
                    company: company.to_owned(),
                    gender: gender.to_owned(),
                    customer_number: customer_number(i),
                    contact_points,
                    notes: notes.to_owned(),
                    tags,
                    credit_hold,
                    attributes,
                },
                audit: Audit {
                    update_time,
                    ..audit(create_time)
                },
                locked: false,
                anonymize_time: None,
            },
            requests,
            activities,
        }
    }

    /// Customer `i`'s own phone, in E.164. No other customer has it.
    pub fn phone(&self, i: u64) -> String {
        self.phone_at(i)
    }

    /// The phone shared by household `h` (3 or 2 customers), in E.164.
    pub fn household_phone(&self, h: u64) -> String {
        self.phone_at(HOUSEHOLD_PHONES_FROM + h)
    }

    /// The `n`-th phone no customer has (any `n`; wraps around a range of 100,000,000).
    pub fn unknown_phone(&self, n: u64) -> String {
        self.phone_at(UNKNOWN_PHONES_FROM + n % UNKNOWN_PHONES)
    }

    /// How many households are shared by customers of the book (two per complete block).
    pub fn households(&self) -> u64 {
        self.customers / HOUSEHOLD_BLOCK * 2
    }

    /// Household members exist only in complete blocks, so that a household phone always matches 2 or 3.
    fn household_complete(&self, i: u64) -> bool {
        (i / HOUSEHOLD_BLOCK + 1) * HOUSEHOLD_BLOCK <= self.customers
    }

    fn phone_at(&self, index: u64) -> String {
        let scrambled = ((u128::from(index) * u128::from(SCRAMBLE) + u128::from(self.seed))
            % u128::from(PHONE_SPACE)) as u64;
        let area = AREA_CODES[(scrambled / (EXCHANGES * LINES)) as usize];
        let exchange = exchange((scrambled / LINES) % EXCHANGES);
        let line = scrambled % LINES;
        format!("+1{area}{exchange}{line:04}")
    }
}

/// The household customer `i` belongs to, if any: offsets 0-2 of a block share one, offsets 3-4 another.
fn household_of(i: u64) -> Option<u64> {
    let block = i / HOUSEHOLD_BLOCK;
    match i % HOUSEHOLD_BLOCK {
        0..=2 => Some(block * 2),
        3..=4 => Some(block * 2 + 1),
        _ => None,
    }
}

/// The `n`-th exchange (0..791) of 200-999, skipping N11 and 555.
fn exchange(n: u64) -> u64 {
    EXCHANGE_TABLE
        .get(n as usize)
        .map_or(999, |&exchange| u64::from(exchange))
}

/// Exchanges 200-999 without N11 service codes and 555, in order.
const EXCHANGE_TABLE: [u16; EXCHANGES as usize] = {
    let mut table = [0u16; EXCHANGES as usize];
    let (mut candidate, mut n) = (200u16, 0usize);
    while candidate < 1000 {
        if candidate % 100 != 11 && candidate != 555 {
            table[n] = candidate;
            n += 1;
        }
        candidate += 1;
    }
    table
};

/// The customer number of customer `i`.
pub fn customer_number(i: u64) -> String {
    format!("C{i:09}")
}

pub fn agent_name(n: u64) -> String {
    format!("agent-{:03}", n + 1)
}

/// ASCII lower-case letters and digits of `name` ("Ana María" -> "anamaria").
pub fn slug(name: &str) -> String {
    fold::fold(name)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// Mixes the seed and an index into an independent generator (SplitMix64 finalizer, then ChaCha8, which is
/// reproducible across platforms and `rand` versions).
pub fn rng_for(seed: u64, index: u64) -> ChaCha8Rng {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

/// A UUIDv7 string for a record made at `micros`, with random bits from `rng`.
fn time_ordered_id(rng: &mut impl Rng, micros: Micros) -> String {
    let mut random = [0u8; 10];
    rng.fill(&mut random);
    let millis = u64::try_from(micros / 1000).unwrap_or_default();
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use customer_context::domain::contact::{normalize_phone, parse_region};

    use super::*;

    #[test]
    fn customers_are_deterministic_and_ids_grow_with_the_index() {
        let book = Book::new(42, 1_000);
        let a = book.customer(7);
        let b = book.customer(7);
        assert_eq!(a.customer, b.customer);
        assert!(book.customer(6).customer.id < a.customer.id);
        assert!(a.customer.id < book.customer(8).customer.id);
        assert_ne!(Book::new(43, 1_000).customer(7).customer.id, a.customer.id);
    }

    #[test]
    fn phones_are_distinct_across_regions_and_valid_us_numbers() {
        let book = Book::new(42, 1_000_000);
        let us = parse_region("US").unwrap();
        let mut seen = HashSet::new();
        let phones = (0..2_000)
            .map(|i| book.phone(i))
            .chain((0..200).map(|h| book.household_phone(h)))
            .chain((0..200).map(|n| book.unknown_phone(n)));
        for phone in phones {
            assert_eq!(normalize_phone(&phone, us).as_deref(), Ok(phone.as_str()));
            assert!(seen.insert(phone.clone()), "{phone} twice");
        }
    }

    #[test]
    fn every_area_code_and_exchange_is_valid() {
        let us = parse_region("US").unwrap();
        for area in AREA_CODES {
            for n in (0..EXCHANGES).step_by(7).chain([EXCHANGES - 1]) {
                let phone = format!("+1{area}{}0100", exchange(n));
                assert!(normalize_phone(&phone, us).is_ok(), "{phone}");
            }
        }
        assert_eq!(exchange(0), 200);
        assert_eq!(exchange(EXCHANGES - 1), 999);
    }

    #[test]
    fn households_are_shared_by_three_or_two_customers_of_complete_blocks() {
        let book = Book::new(1, 120);
        let holders = |h: u64| {
            (0..book.customers)
                .filter(|&i| {
                    book.customer(i)
                        .customer
                        .data
                        .contact_points
                        .iter()
                        .any(|p| p.value == book.household_phone(h))
                })
                .count()
        };
        assert_eq!(book.households(), 4);
        assert_eq!(holders(0), 3);
        assert_eq!(holders(1), 2);
        assert_eq!(holders(3), 2);
        // Block 2 (customers 100..150) is incomplete: nobody has its household phones.
        assert_eq!(holders(4), 0);
    }
}
