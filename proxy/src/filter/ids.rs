//! How an id in a list or rule matches an event's id.

/// `pattern` (lower-cased) matches `id` (lower-cased) when it is the same id,
/// or a domain that `id` belongs to: `company.com` matches `x@company.com` and
/// `x@sales.company.com`, but not `x@notcompany.com`.
pub fn matches(pattern: &str, id: &str) -> bool {
    if id == pattern {
        return true;
    }
    match id.strip_suffix(pattern) {
        Some(head) => !pattern.contains('@') && (head.ends_with('@') || head.ends_with('.')),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn exact_ids_and_domain_suffixes() {
        assert!(matches("bob@company.com", "bob@company.com"));
        assert!(matches("company.com", "x@company.com"));
        assert!(matches("company.com", "x@sales.company.com"));
        assert!(!matches("company.com", "x@notcompany.com"));
        assert!(!matches("bob@company.com", "alice@company.com"));
        assert!(!matches("b@company.com", "bob.b@company.com"));
        assert!(!matches("bob", "bobby"));
    }
}
