//! Durations as users write them and read them: `30m`, `12h`, `7d`.

use std::time::Duration;

const UNITS: [(char, u64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Parses a whole number with one unit: `s`, `m`, `h`, `d` or `w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let expected = "expected a number with a unit s, m, h, d or w, like 30m, 12h or 7d";
    let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic()) else {
        return Err(format!("'{text}' is not a duration ({expected})"));
    };
    let number: u64 = t[..t.len() - 1]
        .parse()
        .map_err(|_| format!("'{text}' is not a duration ({expected})"))?;
    let (_, seconds) = UNITS
        .iter()
        .find(|(u, _)| *u == unit.to_ascii_lowercase())
        .ok_or_else(|| format!("'{text}' has an unknown unit '{unit}' ({expected})"))?;
    number
        .checked_mul(*seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{text}' is too long"))
}

/// The duration in its largest whole unit up to days, rounded down: `45s`,
/// `12m`, `5h`, `3d`; a unit is used from two of it on (`90m`, not `1h`).
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, size) in &UNITS[1..] {
        if secs >= 2 * size || *unit == 's' {
            return format!("{}{unit}", secs / size);
        }
    }
    unreachable!("the last unit is seconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("7").unwrap_err().contains("not a duration"));
        assert!(parse_duration("d").unwrap_err().contains("not a duration"));
        assert!(
            parse_duration("1.5h")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(
            parse_duration("3y")
                .unwrap_err()
                .contains("unknown unit 'y'")
        );
        assert!(
            parse_duration("99999999999999999w")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn short_durations_round_down_to_the_largest_unit() {
        let s = |secs| short_duration(Duration::from_secs(secs));
        assert_eq!(s(0), "0s");
        assert_eq!(s(119), "119s");
        assert_eq!(s(120), "2m");
        assert_eq!(s(5400), "90m");
        assert_eq!(s(7200), "2h");
        assert_eq!(s(3 * 86_400 + 5), "3d");
        assert_eq!(s(30 * 86_400), "30d");
    }
}
