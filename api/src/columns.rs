//! Text in columns, as Go's `text/tabwriter` lays out docker's and
//! BuildKit's tables: each cell but the last padded to its column's widest
//! cell plus `gap` spaces, trailing blanks trimmed.

/// `rows` (the first may be a header) as lines, each ending in `\n`.
pub fn columns<R: AsRef<[String]>>(rows: &[R], gap: usize) -> String {
    let count = rows.first().map_or(0, |r| r.as_ref().len());
    let widths: Vec<usize> = (0..count)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.as_ref().iter().enumerate() {
            if c + 1 == count {
                line.push_str(cell);
            } else {
                let width = widths.get(c).copied().unwrap_or(0) + gap;
                line.push_str(&format!("{cell:<width$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_all_but_the_last_column() {
        let rows = [
            vec!["NAME".to_owned(), "SIZE".to_owned()],
            vec!["a".to_owned(), "1".to_owned()],
        ];
        assert_eq!(columns(&rows, 3), "NAME   SIZE\na      1\n");
        assert_eq!(columns(&rows, 1), "NAME SIZE\na    1\n");
    }
}
