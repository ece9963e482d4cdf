//! Plain aligned columns for terminals and scripts: no borders, two spaces
//! between columns, no trailing blanks, so `awk`/`cut` users and the eye
//! both read it. Every CLI listing goes through [`columns`].

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, presets};

/// Render a header and rows as aligned columns. Columns whose index is in
/// `right` are right-aligned (counts, sizes). Cells never wrap: a long
/// summary makes its column wide rather than splitting a line.
pub fn columns<R, C>(header: &[&str], rows: R, right: &[usize]) -> String
where
    R: IntoIterator<Item = Vec<C>>,
    C: Into<String>,
{
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for r in rows {
        t.add_row(r.into_iter().map(Into::into).collect::<Vec<String>>());
    }
    let n = header.len();
    for (i, col) in t.column_iter_mut().enumerate() {
        // Two spaces between columns, none at the edges.
        col.set_padding((0, if i + 1 == n { 0 } else { 2 }));
        col.set_constraint(ColumnConstraint::ContentWidth);
        if right.contains(&i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_without_borders_or_trailing_blanks() {
        let t = columns(
            &["NAME", "COUNT", "NOTE"],
            vec![vec!["a", "7", ""], vec!["longer-name", "1234", "x y"]],
            &[1],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "NAME         COUNT  NOTE");
        assert_eq!(lines[1], "a                7");
        assert_eq!(lines[2], "longer-name   1234  x y");
    }
}
