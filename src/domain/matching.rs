//! Duplicate matching: how alike two customers' names are, and how likely two customers are the same person
//! given what they share.
//!
//! Shared contact points are strong evidence (a phone number or an email address rarely belongs to two people),
//! a similar name is weak evidence (many people share a name). Each piece of evidence has a weight in 0..1 and
//! they combine as independent signals: `score = 1 - Π(1 - weight)`, so more evidence always raises the score
//! and the score stays below 1.

use super::fold;

/// Names at least this similar (Jaro-Winkler on folded words, see [`name_similarity`]) count as a match.
pub const SIMILAR_NAME_THRESHOLD: f64 = 0.9;

/// Weight of one shared phone number.
const PHONE_WEIGHT: f64 = 0.6;
/// Weight of one shared email address.
const EMAIL_WEIGHT: f64 = 0.6;
/// Weight of one shared chat, social or external handle.
const HANDLE_WEIGHT: f64 = 0.5;
/// Weight of identical names; a merely similar name weighs proportionally less.
const NAME_WEIGHT: f64 = 0.45;

/// Why a customer matched.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchReason {
    /// Both have this phone number (E.164).
    SharedPhone(String),
    /// Both have this email address.
    SharedEmail(String),
    /// Both have this chat, social or external handle.
    SharedHandle(String),
    /// The names are alike; the other customer's name.
    SimilarName(String),
}

/// The folded words of a person's name, in order (`"Zoë", "de la Cruz"` gives `["zoe", "de", "la", "cruz"]`).
pub fn name_words(first_name: &str, last_name: &str) -> Vec<String> {
    fold::words(&format!("{first_name} {last_name}"))
}

/// How alike two names are, 0..1, ignoring case, accents and word order: the best Jaro-Winkler similarity of
/// the words in their given order, with the second name's words reversed, and with both sorted. 0 when either
/// name has no words.
pub fn name_similarity(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let joined = |words: &[String]| words.join(" ");
    let sorted = |words: &[String]| {
        let mut words = words.to_vec();
        words.sort();
        words.join(" ")
    };
    let mut reversed = b.to_vec();
    reversed.reverse();
    let (a_joined, a_sorted) = (joined(a), sorted(a));
    [
        strsim::jaro_winkler(&a_joined, &joined(b)),
        strsim::jaro_winkler(&a_joined, &joined(&reversed)),
        strsim::jaro_winkler(&a_sorted, &sorted(b)),
    ]
    .into_iter()
    .fold(0.0, f64::max)
}

/// How likely a customer with these reasons is the same person, 0..1. `name_similarity` is the similarity
/// behind a [`MatchReason::SimilarName`] reason.
pub fn score(reasons: &[MatchReason], name_similarity: f64) -> f64 {
    let unlikely: f64 = reasons
        .iter()
        .map(|reason| match reason {
            MatchReason::SharedPhone(_) => PHONE_WEIGHT,
            MatchReason::SharedEmail(_) => EMAIL_WEIGHT,
            MatchReason::SharedHandle(_) => HANDLE_WEIGHT,
            MatchReason::SimilarName(_) => NAME_WEIGHT * name_similarity.clamp(0.0, 1.0),
        })
        .map(|weight| 1.0 - weight)
        .product();
    (1.0 - unlikely).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(a: (&str, &str), b: (&str, &str)) -> f64 {
        name_similarity(&name_words(a.0, a.1), &name_words(b.0, b.1))
    }

    #[test]
    fn names_compare_without_case_accents_or_word_order() {
        assert_eq!(sim(("Zoë", "Smith"), ("zoe", "SMITH")), 1.0);
        assert_eq!(sim(("Zoë", "Smith"), ("Smith", "Zoe")), 1.0);
        assert!(sim(("Jon", "Smith"), ("John", "Smith")) >= SIMILAR_NAME_THRESHOLD);
        assert!(sim(("Carla", "Diaz"), ("Karla", "Díaz")) >= SIMILAR_NAME_THRESHOLD);
        assert!(sim(("John", "Smith"), ("Maria", "Lopez")) < SIMILAR_NAME_THRESHOLD);
        assert!(sim(("John", "Smith"), ("Jane", "Smith")) < SIMILAR_NAME_THRESHOLD);
        assert_eq!(sim(("", ""), ("John", "Smith")), 0.0);
    }

    #[test]
    fn contact_points_weigh_more_than_names() {
        let phone = score(&[MatchReason::SharedPhone("+1".into())], 0.0);
        let name = score(&[MatchReason::SimilarName("x".into())], 1.0);
        let both = score(
            &[
                MatchReason::SharedPhone("+1".into()),
                MatchReason::SimilarName("x".into()),
            ],
            1.0,
        );
        assert!(phone > name, "{phone} > {name}");
        assert!(both > phone && both < 1.0, "{both}");
        assert_eq!(score(&[], 0.0), 0.0);
    }
}
