//! The `uploads` scenario's vocabulary: cities of the geo ranges, content types with their sizes
//! and buckets, and ticker symbols.

/// (ISO country, city, latitude, longitude, weight).
pub(crate) const CITIES: &[(&str, &str, f64, f64, u32)] = &[
    ("US", "New York", 40.7128, -74.0060, 10),
    ("US", "Los Angeles", 34.0522, -118.2437, 7),
    ("US", "Chicago", 41.8781, -87.6298, 5),
    ("US", "Dallas", 32.7767, -96.7970, 4),
    ("US", "Seattle", 47.6062, -122.3321, 4),
    ("US", "Ashburn", 39.0438, -77.4874, 6),
    ("CA", "Toronto", 43.6532, -79.3832, 4),
    ("CA", "Montreal", 45.5019, -73.5674, 2),
    ("MX", "Mexico City", 19.4326, -99.1332, 3),
    ("BR", "Sao Paulo", -23.5505, -46.6333, 5),
    ("BR", "Rio de Janeiro", -22.9068, -43.1729, 2),
    ("AR", "Buenos Aires", -34.6037, -58.3816, 2),
    ("CO", "Bogota", 4.7110, -74.0721, 2),
    ("GB", "London", 51.5074, -0.1278, 6),
    ("GB", "Manchester", 53.4808, -2.2426, 2),
    ("FR", "Paris", 48.8566, 2.3522, 5),
    ("FR", "Lyon", 45.7640, 4.8357, 1),
    ("ES", "Madrid", 40.4168, -3.7038, 3),
    ("ES", "Barcelona", 41.3874, 2.1686, 2),
    ("DE", "Berlin", 52.5200, 13.4050, 3),
    ("DE", "Frankfurt", 50.1109, 8.6821, 4),
    ("DE", "Munich", 48.1351, 11.5820, 2),
    ("IT", "Milan", 45.4642, 9.1900, 2),
    ("IT", "Rome", 41.9028, 12.4964, 2),
    ("NL", "Amsterdam", 52.3676, 4.9041, 4),
    ("SE", "Stockholm", 59.3293, 18.0686, 2),
    ("PL", "Warsaw", 52.2297, 21.0122, 2),
    ("TR", "Istanbul", 41.0082, 28.9784, 2),
    ("IN", "Mumbai", 19.0760, 72.8777, 5),
    ("IN", "Bengaluru", 12.9716, 77.5946, 4),
    ("IN", "Delhi", 28.7041, 77.1025, 4),
    ("ID", "Jakarta", -6.2088, 106.8456, 3),
    ("PH", "Manila", 14.5995, 120.9842, 2),
    ("VN", "Ho Chi Minh City", 10.8231, 106.6297, 2),
    ("JP", "Tokyo", 35.6762, 139.6503, 5),
    ("JP", "Osaka", 34.6937, 135.5023, 2),
    ("KR", "Seoul", 37.5665, 126.9780, 3),
    ("SG", "Singapore", 1.3521, 103.8198, 3),
    ("AU", "Sydney", -33.8688, 151.2093, 3),
    ("AU", "Melbourne", -37.8136, 144.9631, 2),
    ("ZA", "Johannesburg", -26.2041, 28.0473, 2),
    ("NG", "Lagos", 6.5244, 3.3792, 2),
];

/// (MIME type, median size in bytes, weight, buckets it goes to).
pub(crate) const CONTENT_TYPES: &[(&str, f64, u32, &[&str])] = &[
    ("image/jpeg", 2.5e6, 30, &["user-media", "user-media", "thumbnails"]),
    ("image/png", 8.0e5, 12, &["user-media", "thumbnails"]),
    ("video/mp4", 6.0e7, 8, &["user-media"]),
    ("application/pdf", 4.0e5, 12, &["documents"]),
    ("application/zip", 2.5e7, 6, &["backups", "documents"]),
    ("text/csv", 3.0e6, 10, &["datasets", "logs"]),
    ("application/json", 4.0e4, 12, &["datasets", "logs", "logs"]),
    ("application/octet-stream", 1.0e7, 5, &["backups"]),
    ("application/vnd.apache.parquet", 5.0e7, 5, &["datasets"]),
];

/// Every bucket, sorted.
pub(crate) const BUCKETS: &[&str] = &["backups", "datasets", "documents", "logs", "thumbnails", "user-media"];

/// Ticker symbols, most traded first.
pub(crate) const SYMBOLS: &[&str] = &[
    "ACME", "GLBX", "INIT", "UMBR", "WAYN", "STRK", "CYDN", "HOOL", "PIPR", "SOYL", "TYRL", "WNKA", "OSCP", "VAND",
    "MSSV", "NAKA", "ZORG", "BLTH", "DUFF", "KRUS",
];

/// Number of sensors, `s-0001` to `s-0120`.
pub(crate) const SENSORS: u16 = 120;
