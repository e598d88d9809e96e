//! The `learning` scenario's vocabulary: locales (country, timezone, region), the diurnal
//! activity curve, app clients and bot user agents, quiz topics, CEFR levels and event types; and
//! the preferred languages of each country, which the `uploads` scenario shares.

/// (ISO country, IANA timezone, UTC offset in minutes on 2024-03-04, region, popularity).
pub(crate) const LOCALES: &[(&str, &str, i64, &str, u32)] = &[
    ("US", "America/New_York", -300, "us-east", 11),
    ("US", "America/Chicago", -360, "us-east", 5),
    ("US", "America/Los_Angeles", -480, "us-west", 6),
    ("CA", "America/Toronto", -300, "us-east", 3),
    ("MX", "America/Mexico_City", -360, "us-west", 4),
    ("BR", "America/Sao_Paulo", -180, "sa-east", 8),
    ("AR", "America/Argentina/Buenos_Aires", -180, "sa-east", 2),
    ("CO", "America/Bogota", -300, "sa-east", 2),
    ("GB", "Europe/London", 0, "eu-west", 6),
    ("FR", "Europe/Paris", 60, "eu-west", 5),
    ("ES", "Europe/Madrid", 60, "eu-west", 4),
    ("DE", "Europe/Berlin", 60, "eu-central", 7),
    ("IT", "Europe/Rome", 60, "eu-central", 3),
    ("PL", "Europe/Warsaw", 60, "eu-central", 3),
    ("TR", "Europe/Istanbul", 180, "eu-central", 3),
    ("IN", "Asia/Kolkata", 330, "ap-south", 10),
    ("ID", "Asia/Jakarta", 420, "ap-southeast", 4),
    ("PH", "Asia/Manila", 480, "ap-southeast", 3),
    ("VN", "Asia/Ho_Chi_Minh", 420, "ap-southeast", 2),
    ("JP", "Asia/Tokyo", 540, "ap-northeast", 5),
    ("KR", "Asia/Seoul", 540, "ap-northeast", 3),
    ("AU", "Australia/Sydney", 660, "ap-southeast", 2),
];

/// Relative activity by local hour (peak 1.0 at 20:00, trough at 04:00).
pub(crate) const DIURNAL: [f64; 24] = [
    0.20, 0.12, 0.08, 0.06, 0.06, 0.10, 0.22, 0.40, 0.55, 0.55, 0.50, 0.52, 0.62, 0.58, 0.50, 0.50, 0.55, 0.65, 0.80,
    0.92, 1.00, 0.95, 0.70, 0.40,
];

pub(crate) const TOPICS: &[&str] = &[
    "vocabulary",
    "grammar",
    "listening",
    "reading",
    "pronunciation",
    "verbs",
    "tenses",
    "prepositions",
    "idioms",
    "spelling",
    "numbers",
    "travel",
];
pub(crate) const LEVELS: &[&str] = &["A1", "A2", "B1", "B2", "C1", "C2"];
const VERSIONS: &[(&str, u32)] = &[("7.6.1", 45), ("7.6.0", 25), ("7.5.2", 20), ("7.4.0", 10)];
/// (os, user agent with `{v}` for the app version, popularity).
const CLIENTS: &[(&str, &str, u32)] = &[
    ("iOS", "LinguaLoop/{v} (iPhone; iOS 17.3.1; Scale/3.00)", 40),
    ("Android", "LinguaLoop/{v} (Linux; Android 14; SM-S911B)", 35),
    ("Web", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 LinguaLoopWeb/{v}", 25),
];
pub(crate) const BOT_AGENTS: &[&str] = &[
    "python-requests/2.31.0",
    "curl/8.1.2",
    "Mozilla/5.0 (compatible; QuizHarvestBot/1.4; +https://example.com/bot)",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    #[default]
    SessionStart,
    Attempt,
    SessionEnd,
    Placement,
}

impl Kind {
    /// Every event type, in discriminant order.
    pub(crate) const ALL: [Kind; 4] = [Kind::SessionStart, Kind::Attempt, Kind::SessionEnd, Kind::Placement];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::SessionStart => "session_start",
            Kind::Attempt => "attempt",
            Kind::SessionEnd => "session_end",
            Kind::Placement => "placement",
        }
    }
}

/// A user agent and the `device` it implies.
pub(crate) struct Agent {
    pub os: &'static str,
    pub version: &'static str,
    pub ua: String,
}

/// Every user agent: the app clients (each version of each), then the bots; and the clients'
/// popularity weights (bots are chosen separately).
pub(crate) fn agents() -> (Vec<Agent>, Vec<f64>) {
    let mut agents = Vec::new();
    let mut weights = Vec::new();
    for (os, template, w) in CLIENTS {
        for (version, vw) in VERSIONS {
            let ua = template.replace("{v}", version);
            agents.push(Agent { os, version, ua });
            weights.push(f64::from(w * vw));
        }
    }
    let bot = |ua: &&str| Agent {
        os: "Linux",
        version: "unknown",
        ua: ua.to_string(),
    };
    agents.extend(BOT_AGENTS.iter().map(bot));
    (agents, weights)
}

/// Preferred languages (ISO 639-1) of each country's users, with weights.
const LANGUAGES: &[(&str, &[(&str, u32)])] = &[
    ("US", &[("en", 85), ("es", 15)]),
    ("CA", &[("en", 75), ("fr", 25)]),
    ("MX", &[("es", 1)]),
    ("BR", &[("pt", 1)]),
    ("AR", &[("es", 1)]),
    ("CO", &[("es", 1)]),
    ("GB", &[("en", 1)]),
    ("FR", &[("fr", 1)]),
    ("ES", &[("es", 85), ("ca", 15)]),
    ("DE", &[("de", 1)]),
    ("IT", &[("it", 1)]),
    ("NL", &[("nl", 80), ("en", 20)]),
    ("SE", &[("sv", 75), ("en", 25)]),
    ("PL", &[("pl", 1)]),
    ("TR", &[("tr", 1)]),
    ("IN", &[("en", 55), ("hi", 45)]),
    ("ID", &[("id", 1)]),
    ("PH", &[("tl", 60), ("en", 40)]),
    ("VN", &[("vi", 1)]),
    ("JP", &[("ja", 1)]),
    ("KR", &[("ko", 1)]),
    ("SG", &[("en", 70), ("zh", 30)]),
    ("AU", &[("en", 1)]),
    ("ZA", &[("en", 70), ("af", 30)]),
    ("NG", &[("en", 1)]),
];

/// The preferred language of a user in `country`, for `u` uniform in [0, 1); English for a
/// country without an entry.
pub(crate) fn language(country: &str, u: f64) -> &'static str {
    let Some((_, langs)) = LANGUAGES.iter().find(|(c, _)| *c == country) else {
        return "en";
    };
    let total: u32 = langs.iter().map(|l| l.1).sum();
    let mut x = u * f64::from(total);
    for (lang, w) in *langs {
        x -= f64::from(*w);
        if x < 0.0 {
            return lang;
        }
    }
    langs[langs.len() - 1].0
}

/// The languages `country`'s users may prefer.
#[cfg(test)]
pub(crate) fn languages(country: &str) -> Vec<&'static str> {
    let langs = LANGUAGES.iter().find(|(c, _)| *c == country).map_or(&[][..], |l| l.1);
    langs.iter().map(|l| l.0).collect()
}
