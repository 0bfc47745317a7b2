//! Contact points (phone numbers, email addresses, chat/social/external handles): how they are
//! normalized, validated and compared, so that a router looking up a caller's number finds the
//! customer however the number was typed.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use email_address::EmailAddress;
use phonenumber::PhoneNumber;
use phonenumber::country::{Id, Source};
use phonenumber::metadata::DATABASE;
use phonenumber::metadata::{Descriptor, Metadata};
use regex::{Regex, RegexBuilder};

use super::text::check_text;
use super::violations::{Violations, reason};

/// Kinds of contact point; the numbers are the proto enum numbers (`ContactKind` in
/// `proto/customer_context/v1/customer.proto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContactKind {
    Phone = 1,
    Email = 2,
    Chat = 3,
    Social = 4,
    External = 5,
}

impl ContactKind {
    /// The kind with proto number `value`; `None` for 0 (unspecified) and unknown numbers.
    pub fn from_i32(value: i32) -> Option<ContactKind> {
        match value {
            1 => Some(ContactKind::Phone),
            2 => Some(ContactKind::Email),
            3 => Some(ContactKind::Chat),
            4 => Some(ContactKind::Social),
            5 => Some(ContactKind::External),
            _ => None,
        }
    }

    /// The proto enum number.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Phone => "phone",
            ContactKind::Email => "email",
            ContactKind::Chat => "chat",
            ContactKind::Social => "social",
            ContactKind::External => "external",
        }
    }

    /// The kind named `s` by [`ContactKind::as_str`] (exact, lower-case).
    pub fn parse(s: &str) -> Option<ContactKind> {
        match s {
            "phone" => Some(ContactKind::Phone),
            "email" => Some(ContactKind::Email),
            "chat" => Some(ContactKind::Chat),
            "social" => Some(ContactKind::Social),
            "external" => Some(ContactKind::External),
            _ => None,
        }
    }
}

/// A validated, normalized contact point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactPoint {
    pub kind: ContactKind,
    /// Free text such as "mobile" or "work", trimmed.
    pub label: String,
    /// E.164 for phones, lower-case for email, trimmed for handles.
    pub value: String,
}

/// Raw input as the caller sent it.
#[derive(Clone, Debug, Default)]
pub struct ContactPointInput {
    /// Proto `ContactKind` number.
    pub kind: i32,
    pub label: String,
    pub value: String,
}

/// Most contact points on one customer.
pub const MAX_CONTACT_POINTS: usize = 50;

/// Longest phone input accepted, formatting included (E.164 itself has at most 16 characters).
const MAX_PHONE_INPUT_CHARS: usize = 64;

/// Parses an ISO 3166-1 alpha-2 region such as `"US"` or `"gb"` (case-insensitive).
pub fn parse_region(code: &str) -> Result<Id, String> {
    let code = code.trim();
    if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "not a two-letter region code such as US or GB (got {code:?})"
        ));
    }
    Id::from_str(&code.to_ascii_uppercase())
        .map_err(|_| format!("unknown region {code:?} (expected an ISO 3166-1 code such as US)"))
}

/// Normalizes a phone number to E.164 (`"+14155550100"`).
///
/// Accepts international numbers (`"+1 415-555-0100"`, `"00 44 20 7946 0958"`, `"+44 (0)20 ..."`),
/// RFC 3966 URIs without parameters (`"tel:+1-415-555-0100"`), and national numbers, read as
/// numbers of `region` (`"(415) 555-0100"`). Only digits, whitespace and `+ - ( ) . /` are
/// allowed, so letters and extensions are refused. The number must be valid per libphonenumber's
/// metadata (which includes the 555-01xx fictional range of the North American plan).
pub fn normalize_phone(raw: &str, region: Id) -> Result<String, String> {
    let trimmed = raw.trim();
    let number = match trimmed.get(..4) {
        Some(scheme) if scheme.eq_ignore_ascii_case("tel:") => trimmed[4..].trim_start(),
        _ => trimmed,
    };
    if number.chars().count() > MAX_PHONE_INPUT_CHARS {
        return Err(format!(
            "too long for a phone number (at most {MAX_PHONE_INPUT_CHARS} characters)"
        ));
    }
    let mut cleaned = String::with_capacity(number.len());
    for c in number.chars() {
        match c {
            '0'..='9' | '+' | '-' | '(' | ')' | '.' | '/' => cleaned.push(c),
            c if c.is_whitespace() => cleaned.push(' '),
            c => {
                return Err(format!(
                    "a phone number holds only digits, spaces and + - ( ) . / (found {c:?})"
                ));
            }
        }
    }
    parse_phone(&cleaned, region)
        .map(|number| e164(&number))
        .ok_or_else(|| {
            format!(
                "not a valid phone number (expected e.g. +14155550100, or a national number of {})",
                region.as_ref()
            )
        })
}

/// `number` in E.164: `+`, the country code and the national number, as phonenumber's formatter writes it in
/// `Mode::E164`. The formatter first picks the region's display format by matching its patterns against the
/// number, which E.164 does not use: that was about a quarter of a phone number's normalization.
fn e164(number: &PhoneNumber) -> String {
    format!("+{}{}", number.code().value(), number.national())
}

/// A region without national-prefix rules: with it as the default region, phonenumber reads
/// `"+{digits}"` as the country code followed by every remaining digit.
const LITERAL_REGION: Id = Id::DK;

/// The valid number `text` (digits, whitespace and `+-()./` only) stands for, if any.
///
/// phonenumber 0.3 strips a national prefix even where it is the first digit of the number
/// (whisperfish/rust-phonenumber#76: "+7 812 123 4567" becomes "+7 12 123 4567"), and strips it by
/// the default region's rules even from numbers written with another country code ("+353 1 ..."
/// read with region US loses its "1"). So every reading is tried in order, first the literal one:
/// - international (after `+`, or after `region`'s international prefix such as "011"): the
///   digits exactly as written, else with the national prefix stripped (`+44 (0)20 7946 0958`);
/// - national: the digits after one national prefix, under `region`'s country code, else
///   phonenumber's own reading (carrier codes, or a country code written without `+`);
/// - last, "00" as the international prefix, as in most of the world.
fn parse_phone(text: &str, region: Id) -> Option<PhoneNumber> {
    let valid = |number: Result<PhoneNumber, _>| {
        number
            .ok()
            .filter(|number| number.extension().is_none() && is_valid(number))
    };
    let literal = |digits: &str| {
        valid(phonenumber::parse(
            Some(LITERAL_REGION),
            format!("+{digits}"),
        ))
    };
    let international = |digits: &str| {
        literal(digits).or_else(|| valid(phonenumber::parse(None, format!("+{digits}"))))
    };
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if text.starts_with('+') {
        return international(&digits);
    }
    let meta = DATABASE.by_id(region.as_ref())?;
    let after_idd = meta
        .international_prefix()
        .and_then(|idd| idd.find(&digits))
        .filter(|idd| idd.start() == 0)
        .and_then(|idd| digits.get(idd.end()..));
    let national = meta
        .national_prefix()
        .and_then(|prefix| digits.strip_prefix(prefix))
        .unwrap_or(&digits);
    after_idd
        .and_then(international)
        .or_else(|| literal(&format!("{}{national}", meta.country_code())))
        .or_else(|| {
            valid(phonenumber::parse(Some(region), text))
                .filter(|number| matches!(number.code().source(), Source::Default | Source::Number))
        })
        .or_else(|| digits.strip_prefix("00").and_then(international))
}

/// The kinds of number `phonenumber`'s classification knows, the common ones first; a number of none of them is
/// invalid.
const NUMBER_KINDS: [phonenumber::Type; 10] = {
    use phonenumber::Type;
    [
        Type::FixedLine,
        Type::Mobile,
        Type::TollFree,
        Type::PremiumRate,
        Type::SharedCost,
        Type::Voip,
        Type::PersonalNumber,
        Type::Pager,
        Type::Uan,
        Type::Voicemail,
    ]
};

/// Whether `number` is valid: what `phonenumber::is_valid` answers, with each of the metadata's patterns matched
/// at most once and the common kinds (fixed line, mobile) first. `phonenumber::is_valid` finds the number's
/// region by its kind, then classifies it again, through every kind in turn; for a North American number that was
/// some twenty pattern matches, the larger part of an `OpenContext` call's input checks. The patterns are the
/// metadata's, compiled once per region ([`RegionPatterns`]).
fn is_valid(number: &PhoneNumber) -> bool {
    is_valid_by_region_patterns(number).unwrap_or_else(|| phonenumber::is_valid(number))
}

/// [`is_valid`]'s answer from the compiled patterns; None should a region's patterns not compile.
fn is_valid_by_region_patterns(number: &PhoneNumber) -> Option<bool> {
    let code = number.country().code();
    let national = number.national().to_string();
    let Some(regions) = DATABASE.region(&code) else {
        return Some(false);
    };
    if let [region] = regions[..] {
        // "001": a non-geographic code (such as +800), with metadata of its own.
        let meta = if region == "001" {
            DATABASE
                .by_code(&code)
                .and_then(|metas| metas.into_iter().next())
        } else {
            region
                .parse::<Id>()
                .ok()
                .and_then(|_| DATABASE.by_id(region))
        };
        return match meta {
            Some(meta) => Some(RegionPatterns::of(meta)?.is_of_some_kind(&national)),
            None => Some(false),
        };
    }
    // Several regions share the code: the number's is the first whose leading digits it starts with, or, for
    // a region without leading digits, whose kinds it is of.
    let known = |region: &str| region.parse::<Id>().is_ok();
    for region in regions {
        let Some(meta) = DATABASE.by_id(region) else {
            continue;
        };
        let patterns = RegionPatterns::of(meta)?;
        match &patterns.leading_digits {
            Some(leading) if starts_with_match(leading, &national) => {
                return Some(known(region) && patterns.is_of_some_kind(&national));
            }
            None if patterns.is_of_some_kind(&national) => return Some(known(region)),
            _ => {}
        }
    }
    Some(false)
}

/// One region's patterns for telling a valid number, compiled once for the life of the process.
///
/// `phonenumber` keeps its compiled patterns in one locked cache of a hundred, keyed by the pattern's text: every
/// match hashed the whole pattern (some are thousands of characters), and North American numbers alone use more
/// than a hundred patterns, so the cache recompiled them over and over. Together that was most of the time a
/// phone number's check took.
struct RegionPatterns {
    /// How the region's national numbers begin, when it shares its country code with others.
    leading_digits: Option<Regex>,
    /// Every number of the region.
    general: NumberPattern,
    /// The kinds of [`NUMBER_KINDS`] the region has, in that order.
    kinds: Vec<NumberPattern>,
}

/// A descriptor's pattern and possible lengths, matched as `phonenumber`'s `Descriptor::is_match` does.
struct NumberPattern {
    lengths: Vec<u16>,
    pattern: Regex,
}

impl RegionPatterns {
    /// The compiled patterns of `meta`'s region (keyed by code and id: the non-geographic codes share the id
    /// "001"); None should one of them not compile.
    fn of(meta: &'static Metadata) -> Option<Arc<RegionPatterns>> {
        type Compiled = HashMap<(u16, &'static str), Option<Arc<RegionPatterns>>>;
        static COMPILED: LazyLock<RwLock<Compiled>> = LazyLock::new(RwLock::default);
        let key = (meta.country_code(), meta.id());
        let known = COMPILED
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        known.unwrap_or_else(|| {
            let compiled = RegionPatterns::compile(meta).map(Arc::new);
            COMPILED
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_insert(compiled)
                .clone()
        })
    }

    fn compile(meta: &Metadata) -> Option<RegionPatterns> {
        let descriptors = meta.descriptors();
        Some(RegionPatterns {
            leading_digits: match meta.leading_digits() {
                Some(cached) => Some(compile(cached.as_str())?),
                None => None,
            },
            general: NumberPattern::of(descriptors.general())?,
            kinds: NUMBER_KINDS
                .iter()
                .filter_map(|kind| descriptors.get(*kind))
                .map(NumberPattern::of)
                .collect::<Option<_>>()?,
        })
    }

    fn is_of_some_kind(&self, national: &str) -> bool {
        self.general.is_match(national) && self.kinds.iter().any(|kind| kind.is_match(national))
    }
}

impl NumberPattern {
    fn of(descriptor: &Descriptor) -> Option<NumberPattern> {
        Some(NumberPattern {
            lengths: descriptor.possible_length().to_vec(),
            pattern: compile(descriptor.national_number().as_str())?,
        })
    }

    fn is_match(&self, national: &str) -> bool {
        let possible = self.lengths.is_empty()
            || u16::try_from(national.len()).is_ok_and(|len| self.lengths.contains(&len));
        possible && starts_with_match(&self.pattern, national)
    }
}

/// A metadata pattern, compiled to match only at the start of a number. `phonenumber` reads its patterns as a
/// match that starts at the number's first digit (and need not reach its end), and finds one by searching the
/// whole number for the leftmost match and then backwards for where it starts. Anchored, a number is turned down
/// at the first digit no match can go on with, and a match needs no backward search.
///
/// The patterns are compiled as `phonenumber` compiles them: whitespace is ignored and `#` starts a comment,
/// hence the line break before the closing parenthesis.
fn compile(source: &str) -> Option<Regex> {
    RegexBuilder::new(&format!("^(?:{source}\n)"))
        .ignore_whitespace(true)
        .build()
        .map_err(|err| tracing::error!(%err, source, "a phone metadata pattern does not compile"))
        .ok()
}

/// Whether `pattern` (from [`compile`]) matches at the start of `text`.
fn starts_with_match(pattern: &Regex, text: &str) -> bool {
    pattern.is_match(text)
}

/// Trims and lower-cases an email address, which must then be valid: a plain address (no display
/// name), with a dotted domain name (no IP literal).
pub fn normalize_email(raw: &str) -> Result<String, String> {
    use email_address::{Error, Options};

    let email = raw.trim().to_lowercase();
    let options = Options::default()
        .without_display_text()
        .without_domain_literal()
        .with_required_tld();
    match EmailAddress::parse_with_options(&email, options) {
        Ok(_) => Ok(email),
        Err(error) => {
            let why = match error {
                Error::MissingSeparator => "missing '@'",
                Error::LocalPartEmpty => "nothing before '@'",
                Error::DomainEmpty => "nothing after '@'",
                Error::DomainTooFew => "the domain needs a dot, as in example.com",
                Error::UnsupportedDisplayName => "give the address alone, without a name",
                Error::UnsupportedDomainLiteral => "the domain must be a name, not an IP address",
                Error::LocalPartTooLong | Error::DomainTooLong | Error::SubDomainTooLong => {
                    "too long"
                }
                _ => "invalid character or form",
            };
            Err(format!(
                "not a valid email address such as ana@example.com ({why})"
            ))
        }
    }
}

/// Normalizes a chat, social or external handle: trimmed, case kept.
pub fn normalize_handle(raw: &str) -> String {
    raw.trim().to_owned()
}

/// The key two contact points of the same kind are compared and looked up by, from an already
/// normalized value: the E.164 number for phones, the lower-case address for email, and the
/// trimmed, lower-cased handle otherwise.
pub fn match_key(kind: ContactKind, value: &str) -> String {
    match kind {
        ContactKind::Phone => value.trim().to_owned(),
        ContactKind::Email | ContactKind::Chat | ContactKind::Social | ContactKind::External => {
            value.trim().to_lowercase()
        }
    }
}

/// Validates and normalizes a list of contact points, reporting every problem at
/// `{field}[{i}].kind`, `.label` or `.value`: `INVALID_CONTACT_KIND`, `REQUIRED_FIELD` (empty
/// value), `INVALID_PHONE`, `INVALID_EMAIL`, `FIELD_TOO_LONG` (label or value over 2000
/// characters) and `DUPLICATE_CONTACT_POINT` (same kind and [`match_key`] as an earlier point,
/// which the description names). More than [`MAX_CONTACT_POINTS`] is `TOO_MANY_CONTACT_POINTS` at
/// `field`. National phone numbers are read as numbers of `region`.
///
/// Returns the points without any violation, normalized and with trimmed labels, in input order.
pub fn normalize_contact_points(
    violations: &mut Violations,
    field: &str,
    points: &[ContactPointInput],
    region: Id,
) -> Vec<ContactPoint> {
    if points.len() > MAX_CONTACT_POINTS {
        violations.push(
            field,
            reason::TOO_MANY_CONTACT_POINTS,
            format!(
                "at most {MAX_CONTACT_POINTS} contact points (got {})",
                points.len()
            ),
        );
    }
    let mut first_seen: HashMap<(ContactKind, String), usize> = HashMap::new();
    // The same kind and text again is checked once: a request repeating one number a thousand times costs
    // one phone-number parse.
    let mut raw_seen: HashMap<(i32, &str), usize> = HashMap::new();
    let mut normalized = Vec::with_capacity(points.len().min(MAX_CONTACT_POINTS));
    for (i, point) in points.iter().enumerate() {
        if let Some(&earlier) = raw_seen.get(&(point.kind, point.value.trim())) {
            if violations.is_full() {
                violations.count_more(1);
            } else {
                violations.push(
                    format!("{field}[{i}].value"),
                    reason::DUPLICATE_CONTACT_POINT,
                    format!("duplicates {field}[{earlier}] ({:?})", point.value.trim()),
                );
            }
            continue;
        }
        raw_seen.insert((point.kind, point.value.trim()), i);
        let before = violations.len();
        let kind = ContactKind::from_i32(point.kind);
        if kind.is_none() {
            violations.push(
                format!("{field}[{i}].kind"),
                reason::INVALID_CONTACT_KIND,
                format!(
                    "unknown contact kind {} (expected PHONE, EMAIL, CHAT, SOCIAL or EXTERNAL)",
                    point.kind
                ),
            );
        }
        let label = point.label.trim();
        check_text(violations, &format!("{field}[{i}].label"), label);
        let value_field = format!("{field}[{i}].value");
        let value = normalize_value(violations, &value_field, kind, &point.value, region);
        let (Some(kind), Some(value)) = (kind, value) else {
            continue;
        };
        match first_seen.entry((kind, match_key(kind, &value))) {
            Entry::Occupied(earlier) => violations.push(
                value_field,
                reason::DUPLICATE_CONTACT_POINT,
                format!("duplicates {field}[{}] ({value:?})", earlier.get()),
            ),
            Entry::Vacant(slot) => {
                slot.insert(i);
                if violations.len() == before {
                    normalized.push(ContactPoint {
                        kind,
                        label: label.to_owned(),
                        value,
                    });
                }
            }
        }
    }
    normalized
}

/// The normalized value of one point, or `None` after reporting why it has none. Without a known
/// kind only presence and length are checked.
fn normalize_value(
    violations: &mut Violations,
    field: &str,
    kind: Option<ContactKind>,
    raw: &str,
    region: Id,
) -> Option<String> {
    let value = raw.trim();
    if value.is_empty() {
        violations.push(
            field,
            reason::REQUIRED_FIELD,
            "a contact point needs a value",
        );
        return None;
    }
    let before = violations.len();
    check_text(violations, field, value);
    if violations.len() > before {
        return None;
    }
    let result = match kind? {
        ContactKind::Phone => {
            normalize_phone(value, region).map_err(|e| (reason::INVALID_PHONE, e))
        }
        ContactKind::Email => normalize_email(value).map_err(|e| (reason::INVALID_EMAIL, e)),
        ContactKind::Chat | ContactKind::Social | ContactKind::External => {
            // A handle is looked up by an index, whose entries must stay within what PostgreSQL takes.
            let handle = normalize_handle(value);
            let before = violations.len();
            super::text::check_key_text(violations, field, &handle);
            if violations.len() > before {
                return None;
            }
            Ok(handle)
        }
    };
    result
        .map_err(|(why, description)| violations.push(field, why, description))
        .ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KINDS: [ContactKind; 5] = [
        ContactKind::Phone,
        ContactKind::Email,
        ContactKind::Chat,
        ContactKind::Social,
        ContactKind::External,
    ];

    /// Every example number of libphonenumber's metadata, of every region and kind, and each with its last digit
    /// changed to every other digit, dropped, or doubled: valid and invalid numbers of every country.
    #[test]
    fn validity_is_what_phonenumber_says() {
        use phonenumber::Type;

        // Examples of the general description, of every kind that makes a number valid, and of two kinds the
        // classification does not count (emergency and short codes).
        let kinds = [Type::Unknown]
            .into_iter()
            .chain(NUMBER_KINDS)
            .chain([Type::Emergency, Type::ShortCode]);
        let (mut checked, mut valid) = (0, 0);
        for meta in DATABASE.iter() {
            for kind in kinds.clone() {
                let Some(example) = meta.descriptors().get(kind).and_then(|d| d.example()) else {
                    continue;
                };
                let (head, last) = example.split_at(example.len() - 1);
                let variants = ('0'..='9')
                    .map(|digit| format!("{head}{digit}"))
                    .chain([head.to_owned(), format!("{example}{last}")]);
                for national in variants {
                    let text = format!("+{}{national}", meta.country_code());
                    let Ok(number) = phonenumber::parse(None, &text) else {
                        continue;
                    };
                    let expected = phonenumber::is_valid(&number);
                    assert_eq!(is_valid(&number), expected, "{text} ({})", meta.id());
                    if expected {
                        assert_eq!(
                            e164(&number),
                            number.format().mode(phonenumber::Mode::E164).to_string(),
                            "{text} ({})",
                            meta.id()
                        );
                    }
                    checked += 1;
                    valid += usize::from(expected);
                }
            }
        }
        // Both answers, many times over.
        assert!(
            checked > 10_000 && valid > 2_000 && checked - valid > 2_000,
            "{checked} numbers, {valid} valid"
        );
    }

    fn input(kind: ContactKind, label: &str, value: &str) -> ContactPointInput {
        ContactPointInput {
            kind: kind.as_i32(),
            label: label.into(),
            value: value.into(),
        }
    }

    fn all_regions() -> Vec<Id> {
        let letters = b'A'..=b'Z';
        letters
            .clone()
            .flat_map(|a| letters.clone().map(move |b| [a, b]))
            .filter_map(|code| parse_region(std::str::from_utf8(&code).ok()?).ok())
            .collect()
    }

    #[test]
    fn kinds_round_trip_through_numbers_and_names() {
        for kind in KINDS {
            assert_eq!(ContactKind::from_i32(kind.as_i32()), Some(kind));
            assert_eq!(ContactKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ContactKind::from_i32(0), None);
        assert_eq!(ContactKind::from_i32(6), None);
        assert_eq!(ContactKind::from_i32(-1), None);
        assert_eq!(ContactKind::parse("Phone"), None);
        assert_eq!(ContactKind::parse(""), None);
    }

    #[test]
    fn regions_parse_case_insensitively() {
        assert_eq!(parse_region("US"), Ok(Id::US));
        assert_eq!(parse_region("gb"), Ok(Id::GB));
        assert_eq!(parse_region(" De "), Ok(Id::DE));
        for bad in ["", "U", "USA", "ZZ", "1A", "ü"] {
            assert!(parse_region(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_accepted_region_has_phone_metadata() {
        // phonenumber panics when parsing with a default region it has no metadata for.
        let regions = all_regions();
        assert!(regions.len() > 200, "{}", regions.len());
        for region in regions {
            assert!(
                phonenumber::metadata::DATABASE
                    .by_id(region.as_ref())
                    .is_some(),
                "{region:?}"
            );
        }
    }

    #[test]
    fn literal_region_has_no_national_prefix_rules() {
        let meta = phonenumber::metadata::DATABASE.by_id(LITERAL_REGION.as_ref());
        let meta = meta.expect("metadata for the literal region");
        assert_eq!(meta.national_prefix(), None);
        assert!(meta.national_prefix_for_parsing().is_none());
    }

    #[test]
    fn common_phone_forms_normalize_to_e164() {
        let cases = [
            ("(415) 555-0100", Id::US),
            ("+1 415-555-0100", Id::US),
            ("tel:+14155550100", Id::US),
            ("TEL:+1-415-555-0100", Id::GB),
            ("415.555.0100", Id::US),
            ("1 415 555 0100", Id::US),
            ("011 1 415 555 0100", Id::US),
            ("00 1 415 555 0100", Id::US),
            (" +1\u{a0}415\u{a0}555\u{a0}0100\n", Id::DE),
        ];
        for (raw, region) in cases {
            assert_eq!(
                normalize_phone(raw, region).as_deref(),
                Ok("+14155550100"),
                "{raw:?}"
            );
        }
        let uk = [
            ("00 44 20 7946 0958", Id::US),
            ("+44 20 7946 0958", Id::US),
            ("+44 (0)20 7946 0958", Id::US),
            ("tel: +44-20-7946-0958", Id::US),
            ("020 7946 0958", Id::GB),
        ];
        for (raw, region) in uk {
            assert_eq!(
                normalize_phone(raw, region).as_deref(),
                Ok("+442079460958"),
                "{raw:?}"
            );
        }
        // Numbers with a country code keep every digit whatever the region's national prefix is.
        let international = [
            ("+7 812 123 4567", Id::RU, "+78121234567"),
            ("+7 800 555 35 35", Id::US, "+78005553535"),
            ("8 800 555 35 35", Id::RU, "+78005553535"),
            ("+375 800 111 111", Id::BY, "+375800111111"),
            ("8 (812) 123-45-67", Id::RU, "+78121234567"),
            ("+353 1 234 5678", Id::US, "+35312345678"),
            ("011 353 1 234 5678", Id::US, "+35312345678"),
            ("00 353 1 234 5678", Id::US, "+35312345678"),
            ("+39 06 6982 1234", Id::GB, "+390669821234"),
            ("06 6982 1234", Id::IT, "+390669821234"),
        ];
        for (raw, region, e164) in international {
            assert_eq!(
                normalize_phone(raw, region).as_deref(),
                Ok(e164),
                "{raw:?} in {region:?}"
            );
        }
        // The Italian leading zero is part of the number.
        assert_eq!(
            normalize_phone("+39 06 6982 1234", Id::US).as_deref(),
            Ok("+390669821234")
        );
        assert_eq!(
            normalize_phone("+39 (0)6 6982 1234", Id::US).as_deref(),
            Ok("+390669821234")
        );
    }

    #[test]
    fn fictional_555_01xx_numbers_are_valid() {
        for n in ["0100", "0123", "0199"] {
            for area in ["415", "212", "202", "800"] {
                let raw = format!("({area}) 555-{n}");
                assert_eq!(normalize_phone(&raw, Id::US), Ok(format!("+1{area}555{n}")));
            }
        }
    }

    #[test]
    fn non_numbers_are_refused() {
        for raw in [
            "",
            "12",
            "abc",
            "+999 123",
            "555-0100",
            "+1 555 555 0100",
            "+1 415 555 0100 1",
            "+14155550100 ext. 12",
            "+1 415 555 0100 x12",
            "tel:+14155550100;ext=12",
            "tel:",
            "+1 800 FLOWERS",
            "+",
            "((((",
            &"1".repeat(65),
        ] {
            assert!(normalize_phone(raw, Id::US).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize_email("  Ana.Lopez@Example.COM ").as_deref(),
            Ok("ana.lopez@example.com")
        );
        assert_eq!(
            normalize_email("a+tag@sub.example.org").as_deref(),
            Ok("a+tag@sub.example.org")
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@localhost",
            "ana@[127.0.0.1]",
            "Ana <ana@example.com>",
            "ana@exa mple.com",
            "ana@@example.com",
        ] {
            let error = normalize_email(bad).expect_err(bad);
            assert!(error.starts_with("not a valid email address"), "{error}");
        }
    }

    #[test]
    fn handles_and_keys() {
        assert_eq!(normalize_handle("  @Ana_L "), "@Ana_L");
        assert_eq!(match_key(ContactKind::Chat, "@Ana_L"), "@ana_l");
        assert_eq!(match_key(ContactKind::External, "CRM-17"), "crm-17");
        assert_eq!(
            match_key(ContactKind::Email, "ana@example.com"),
            "ana@example.com"
        );
        assert_eq!(
            match_key(ContactKind::Phone, "+14155550100"),
            "+14155550100"
        );
    }

    #[test]
    fn one_number_written_three_ways_is_two_duplicates() {
        let points = [
            input(ContactKind::Phone, " mobile ", "(415) 555-0100"),
            input(ContactKind::Phone, "", "+1 415-555-0100"),
            input(ContactKind::Phone, "", "tel:+14155550100"),
        ];
        let mut v = Violations::new();
        let out = normalize_contact_points(&mut v, "customer.contact_points", &points, Id::US);
        assert_eq!(
            out,
            [ContactPoint {
                kind: ContactKind::Phone,
                label: "mobile".into(),
                value: "+14155550100".into()
            }]
        );
        let found: Vec<_> = v
            .iter()
            .map(|v| (v.field.as_str(), v.reason, v.description.as_str()))
            .collect();
        let dup = "duplicates customer.contact_points[0] (\"+14155550100\")";
        assert_eq!(
            found,
            [
                (
                    "customer.contact_points[1].value",
                    reason::DUPLICATE_CONTACT_POINT,
                    dup
                ),
                (
                    "customer.contact_points[2].value",
                    reason::DUPLICATE_CONTACT_POINT,
                    dup
                ),
            ]
        );
    }

    #[test]
    fn duplicates_are_per_kind_and_case_insensitive_for_handles() {
        let points = [
            input(ContactKind::Chat, "", "@Ana"),
            input(ContactKind::Social, "", "@ana"),
            input(ContactKind::Chat, "", " @ANA "),
            input(ContactKind::Email, "", "Ana@Example.com"),
            input(ContactKind::Email, "", "ana@example.com"),
        ];
        let mut v = Violations::new();
        let out = normalize_contact_points(&mut v, "c", &points, Id::US);
        let values: Vec<_> = out.iter().map(|p| (p.kind, p.value.as_str())).collect();
        assert_eq!(
            values,
            [
                (ContactKind::Chat, "@Ana"),
                (ContactKind::Social, "@ana"),
                (ContactKind::Email, "ana@example.com"),
            ]
        );
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["c[2].value", "c[4].value"]);
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let long = "é".repeat(2001);
        let points = [
            ContactPointInput {
                kind: 0,
                label: String::new(),
                value: "x".into(),
            },
            ContactPointInput {
                kind: 9,
                label: long.clone(),
                value: String::new(),
            },
            input(ContactKind::Phone, "", "12"),
            input(ContactKind::Email, "", "nope"),
            input(ContactKind::Chat, &long, "@ok"),
            input(ContactKind::External, "", &long),
            input(ContactKind::Chat, "", "   "),
            input(ContactKind::Email, "home", "ok@example.com"),
        ];
        let mut v = Violations::new();
        let out = normalize_contact_points(&mut v, "p", &points, Id::US);
        let found = v.fields_and_reasons();
        assert_eq!(
            found,
            [
                ("p[0].kind", reason::INVALID_CONTACT_KIND),
                ("p[1].kind", reason::INVALID_CONTACT_KIND),
                ("p[1].label", reason::FIELD_TOO_LONG),
                ("p[1].value", reason::REQUIRED_FIELD),
                ("p[2].value", reason::INVALID_PHONE),
                ("p[3].value", reason::INVALID_EMAIL),
                ("p[4].label", reason::FIELD_TOO_LONG),
                ("p[5].value", reason::FIELD_TOO_LONG),
                ("p[6].value", reason::REQUIRED_FIELD),
            ]
        );
        assert_eq!(
            out,
            [ContactPoint {
                kind: ContactKind::Email,
                label: "home".into(),
                value: "ok@example.com".into()
            }]
        );
    }

    #[test]
    fn at_most_fifty_contact_points() {
        let points: Vec<_> = (0..51)
            .map(|i| input(ContactKind::External, "", &format!("id-{i}")))
            .collect();
        let mut v = Violations::new();
        assert_eq!(
            normalize_contact_points(&mut v, "p", &points[..50], Id::US).len(),
            50
        );
        assert!(v.is_empty());
        normalize_contact_points(&mut v, "p", &points, Id::US);
        let found = v.fields_and_reasons();
        assert_eq!(found, [("p", reason::TOO_MANY_CONTACT_POINTS)]);
    }

    fn region() -> impl Strategy<Value = Id> {
        prop::sample::select(all_regions())
    }

    /// Strings built from what people type into a phone field; many are valid numbers.
    fn phone_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "(tel:|TEL:)?[+]?(00|011)?[0-9 ()./+-]{0,24}",
            "(\\+1|1)? ?\\(?[2-9][0-9]{2}\\)? ?[2-9][0-9]{2}[ .-]?[0-9]{4}",
            "(\\+|00|011 ?)(7|44|49|33|39|353|375|61|81|86|91) ?(\\(0\\))?[0-9]{6,11}",
            "[08][1-9][0-9]{7,10}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn normalize_phone_is_idempotent(raw in phone_like(), region in region()) {
            if let Ok(e164) = normalize_phone(&raw, region) {
                prop_assert!(e164.starts_with('+'));
                prop_assert_eq!(normalize_phone(&e164, region), Ok(e164.clone()));
                // E.164 does not depend on the default region.
                prop_assert_eq!(normalize_phone(&e164, Id::US), Ok(e164.clone()));
            }
        }

        #[test]
        fn normalize_phone_never_panics(raw in any::<String>(), region in region()) {
            let _ = normalize_phone(&raw, region);
        }

        #[test]
        fn normalize_email_is_idempotent(
            raw in prop_oneof![
                any::<String>(),
                "[ ]?[a-zA-Z0-9._%+-ÄÖü]{1,10}@[a-zA-Z0-9-]{1,8}(\\.[a-zA-Z]{2,4}){1,2}[ ]?",
            ]
        ) {
            if let Ok(email) = normalize_email(&raw) {
                prop_assert_eq!(normalize_email(&email), Ok(email.clone()));
                prop_assert_eq!(match_key(ContactKind::Email, &email), email);
            }
        }

        #[test]
        fn contact_points_never_panic(
            points in proptest::collection::vec(
                (-1i32..7, ".{0,4}", prop_oneof![any::<String>(), phone_like()]),
                0..6,
            ),
            region in region(),
        ) {
            let points: Vec<_> = points
                .into_iter()
                .map(|(kind, label, value)| ContactPointInput { kind, label, value })
                .collect();
            let mut v = Violations::new();
            let out = normalize_contact_points(&mut v, "p", &points, region);
            prop_assert!(out.len() <= points.len());
        }
    }
}
