//! Search text folding: what an agent types and what is stored are compared after lower-casing
//! and removing diacritics, so "zoe" finds "Zoë" and "ANGSTROM" finds "Ångström".

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::{canonical_combining_class, is_combining_mark};

/// Lower-cases `text` and removes diacritics: the text is lower-cased character by character,
/// decomposed (NFD), and every combining diacritic is dropped (the U+0300..U+036F block and any
/// other mark with a non-zero combining class, such as Hebrew points or a Devanagari virama).
/// Marks that are letters of their script (e.g. Devanagari vowel signs) are kept. Final sigma
/// `ς` becomes `σ`, as Unicode case folding does. `"Zoë Ångström"` folds to `"zoe angstrom"`.
pub fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .nfd()
        .filter(|&c| !is_diacritic(c))
        .map(|c| if c == 'ς' { 'σ' } else { c })
        .collect()
}

/// The folded words of `text`, in order, duplicates kept: maximal runs of alphanumeric characters
/// (marks left by [`fold`] stay inside their word). `"Ana-María O'Neil, +1 415"` gives
/// `["ana", "maria", "o", "neil", "1", "415"]`.
pub fn words(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !(c.is_alphanumeric() || is_combining_mark(c)))
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

fn is_diacritic(c: char) -> bool {
    ('\u{0300}'..='\u{036F}').contains(&c) || canonical_combining_class(c) != 0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn folds_case_and_diacritics() {
        assert_eq!(fold("Zoë Ångström"), "zoe angstrom");
        assert_eq!(fold("ÇA VA, Señor? Łódź"), "ca va, senor? łodz");
        assert_eq!(fold("İstanbul"), "istanbul");
        // Precomposed and decomposed input fold alike.
        assert_eq!(fold("e\u{301}"), fold("\u{e9}"));
        // Angstrom sign and Kelvin sign are canonically/case equivalent to letters.
        assert_eq!(fold("\u{212B}\u{212A}"), "ak");
        assert_eq!(fold("ΟΔΟΣ"), fold("οδος"));
        assert_eq!(fold("Привет"), "привет");
        assert_eq!(fold("123 😀"), "123 😀");
    }

    #[test]
    fn splits_into_folded_words() {
        assert_eq!(
            words("Ana-María O'Neil, +1 415"),
            ["ana", "maria", "o", "neil", "1", "415"]
        );
        assert_eq!(words("  Zoë   zoe "), ["zoe", "zoe"]);
        assert!(words("  --- ").is_empty());
        assert_eq!(words("東京 タワー"), ["東京", "タワー"]);
    }

    #[test]
    fn indic_words_stay_whole() {
        // The virama is a diacritic and is dropped; the vowel signs are part of the word.
        assert_eq!(words("नमस्ते दुनिया"), [fold("नमस्ते"), fold("दुनिया")]);
        assert_eq!(words("नमस्ते").len(), 1);
    }

    #[test]
    fn fold_is_idempotent_on_every_char() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let once = fold(&c.to_string());
            assert_eq!(fold(&once), once, "U+{:04X}", u32::from(c));
        }
    }

    proptest! {
        #[test]
        fn fold_is_idempotent(text in any::<String>()) {
            let once = fold(&text);
            prop_assert_eq!(fold(&once), once);
        }

        #[test]
        fn folded_latin_text_is_idempotent(text in "[a-zA-ZÀ-ɏ\u{300}-\u{36f} ',.-]{0,40}") {
            let once = fold(&text);
            prop_assert_eq!(fold(&once), once);
        }

        #[test]
        fn words_of_folded_text_are_the_words(text in any::<String>()) {
            prop_assert_eq!(words(&fold(&text)), words(&text));
        }
    }
}
