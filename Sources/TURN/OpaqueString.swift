/// The OpaqueString profile of PRECIS (RFC 8265 §4.2), which RFC 8489
/// §9.2.2 and §14.3 apply to passwords, realms and usernames before they go
/// into a long-term key.
///
/// Rules, in the RFC's order: no width mapping; every non-ASCII space
/// (general category Zs) becomes U+0020; no case mapping; Unicode
/// normalisation form C; no directionality rule. The result must be
/// non-empty and every code point allowed by the FreeformClass (RFC 8264
/// §4.3, §9): letters, marks, digits, other numbers, symbols, punctuation,
/// spaces and printable ASCII; not controls, default-ignorable code points,
/// noncharacters, old Hangul jamo, private use, surrogates, unassigned code
/// points, nor the join controls (whose CONTEXTJ rule is not implemented, so
/// they are refused).
///
/// Printable ASCII (U+0020–U+007E) is returned as it is: existing
/// ASCII credentials keep their exact bytes and keys.
///
/// NFC comes from the standard library's `_nfcCodeUnits` (the normaliser
/// `String` comparison uses; underscored, but public and what Foundation
/// builds on), so the TURN module needs no Foundation.
public enum OpaqueString {
    public enum Failure: Error, Equatable, Sendable {
        case empty
        /// A code point the FreeformClass does not allow.
        case disallowed(Unicode.Scalar)
    }

    public static func prepare(_ text: String) throws(Failure) -> String {
        if text.utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) {
            if text.isEmpty { throw .empty }
            return text
        }
        var mapped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            let isSpace = scalar.value > 0x7F && scalar.properties.generalCategory == .spaceSeparator
            mapped.append(isSpace ? " " : scalar)
        }
        let normalized = String(decoding: String(mapped)._nfcCodeUnits, as: UTF8.self)
        if normalized.isEmpty { throw .empty }
        for scalar in normalized.unicodeScalars where !isAllowed(scalar) { throw .disallowed(scalar) }
        return normalized
    }

    /// The FreeformClass's PVALID and FREE_PVAL code points (RFC 8264 §8,
    /// rules in order; HasCompat is not looked up: the code points it adds
    /// to the categories below are few).
    static func isAllowed(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        let p = s.properties
        if p.generalCategory == .unassigned { return false }
        if (0x21...0x7E).contains(v) { return true }
        if v == 0x200C || v == 0x200D { return false }  // join controls (CONTEXTJ)
        if (0x1100...0x11FF).contains(v) || (0xA960...0xA97F).contains(v) || (0xD7B0...0xD7FF).contains(v) {
            return false  // old Hangul jamo
        }
        if p.isDefaultIgnorableCodePoint || p.isNoncharacterCodePoint { return false }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
            .nonspacingMark, .spacingMark, .enclosingMark,
            .decimalNumber, .letterNumber, .otherNumber,
            .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol,
            .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation,
            .spaceSeparator:
            return true
        default:
            return false  // controls, format, private use, surrogates, line and paragraph separators
        }
    }
}
