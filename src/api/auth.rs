//! Bearer tokens of the HTTP API, from the environment
//! (`SENDGATE_API_TOKENS=operator=T1,tenant:acme=T2`) or a file
//! (`SENDGATE_API_TOKENS_FILE`, one `operator T1` or `tenant:acme T2` per
//! line, `#` comments): secrets, so never from the configuration file.

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Tenant(String),
}

impl Caller {
    /// Whether this caller may see or act on `tenant`'s data.
    pub fn may_act_for(&self, tenant: &str) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Tenant(t) => t == tenant,
        }
    }
}

/// Shorter tokens are refused at start-up: a guessable token is none.
pub const TOKEN_MIN_LEN: usize = 16;

#[derive(Default)]
pub struct Tokens(Vec<(String, Caller)>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    /// From the environment: SENDGATE_API_TOKENS, else the file named
    /// by SENDGATE_API_TOKENS_FILE, else none.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Tokens, String> {
        if let Some(list) = env("SENDGATE_API_TOKENS") {
            let pairs = list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(|p| p.split_once('=').map(|(w, t)| (w.trim().to_string(), t.trim().to_string())).ok_or_else(|| format!("SENDGATE_API_TOKENS: {p:?} is not WHO=TOKEN (WHO: operator or tenant:T)")));
            return Tokens::from_pairs(pairs.collect::<Result<Vec<_>, _>>()?, "SENDGATE_API_TOKENS");
        }
        if let Some(path) = env("SENDGATE_API_TOKENS_FILE") {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("SENDGATE_API_TOKENS_FILE {path:?} cannot be read: {e}"))?;
            let pairs = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| l.split_once(char::is_whitespace).map(|(w, t)| (w.trim().to_string(), t.trim().to_string())).ok_or_else(|| format!("SENDGATE_API_TOKENS_FILE {path:?}: a line is not `WHO TOKEN`")));
            return Tokens::from_pairs(pairs.collect::<Result<Vec<_>, _>>()?, "SENDGATE_API_TOKENS_FILE");
        }
        Ok(Tokens::default())
    }

    pub fn from_pairs(pairs: Vec<(String, String)>, source: &str) -> Result<Tokens, String> {
        let mut out: Vec<(String, Caller)> = Vec::new();
        for (who, token) in pairs {
            let caller = match who.as_str() {
                "operator" => Caller::Operator,
                w => match w.strip_prefix("tenant:") {
                    Some(t) if !t.is_empty() => Caller::Tenant(t.to_string()),
                    _ => return Err(format!("{source}: {who:?} must be operator or tenant:T")),
                },
            };
            if token.len() < TOKEN_MIN_LEN {
                return Err(format!("{source}: the token of {who} is shorter than {TOKEN_MIN_LEN} characters"));
            }
            if out.iter().any(|(t, _)| *t == token) {
                return Err(format!("{source}: one token is given twice (each caller needs its own)"));
            }
            out.push((token, caller));
        }
        Ok(Tokens(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The caller of an `Authorization` header's value, if it names a
    /// known token. Compared in constant time, so a reply's timing does
    /// not tell how much of a guess was right.
    pub fn caller(&self, authorization: Option<&str>) -> Option<Caller> {
        let presented = authorization?.strip_prefix("Bearer ")?.trim().as_bytes();
        let mut found = None;
        for (token, caller) in &self.0 {
            let t = token.as_bytes();
            let same = t.len() == presented.len() && t.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            if same && found.is_none() {
                found = Some(caller.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_caller_and_bad_lists_are_refused() {
        let t = Tokens::from_env(&|k| (k == "SENDGATE_API_TOKENS").then(|| "operator=op-0123456789abcdef, tenant:acme=acme-0123456789abcdef".to_string())).unwrap();
        assert_eq!(t.caller(Some("Bearer op-0123456789abcdef")), Some(Caller::Operator));
        assert_eq!(t.caller(Some("Bearer acme-0123456789abcdef")), Some(Caller::Tenant("acme".into())));
        assert_eq!(t.caller(Some("Bearer acme-0123456789abcdeX")), None);
        assert_eq!(t.caller(Some("acme-0123456789abcdef")), None, "the scheme is required");
        assert_eq!(t.caller(None), None);
        assert!(Caller::Tenant("acme".into()).may_act_for("acme") && !Caller::Tenant("acme".into()).may_act_for("globex"));
        for bad in ["operator=short", "someone=0123456789abcdef0", "operator", "operator=0123456789abcdef0,tenant:a=0123456789abcdef0"] {
            assert!(Tokens::from_env(&|k| (k == "SENDGATE_API_TOKENS").then(|| bad.to_string())).is_err(), "{bad}");
        }
        assert!(Tokens::from_env(&|_| None).unwrap().is_empty());
    }
}
