//! The CLI's column tables (`cache list`, `cache list --remote`, `check`): a header row, each
//! column padded to its width, two spaces between columns, the last column unpadded.

use std::fmt::Write as _;

/// One column of a [`Table`].
#[derive(Debug, Clone, Copy)]
pub struct Column {
    header: &'static str,
    width: usize,
    right: bool,
    fit: bool,
}

impl Column {
    /// A left-aligned column at least `width` characters wide.
    pub const fn left(header: &'static str, width: usize) -> Self {
        Self {
            header,
            width,
            right: false,
            fit: false,
        }
    }

    /// A right-aligned column (sizes) at least `width` characters wide.
    pub const fn right(header: &'static str, width: usize) -> Self {
        Self {
            right: true,
            ..Self::left(header, width)
        }
    }

    /// A left-aligned column as wide as its header or its longest cell, whichever is wider.
    pub const fn fit(header: &'static str) -> Self {
        Self {
            fit: true,
            ..Self::left(header, header.len())
        }
    }
}

/// Rows under a header, rendered by [`Table::render`].
#[derive(Debug)]
pub struct Table<const N: usize> {
    columns: [Column; N],
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    /// An empty table.
    pub const fn new(columns: [Column; N]) -> Self {
        Self {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }

    /// The header and the rows, one line each.
    pub fn render(&self, out: &mut String) {
        let mut widths = self.columns.map(|column| column.width);
        for (index, column) in self.columns.iter().enumerate() {
            if column.fit {
                let cells = self.rows.iter().map(|row| row[index].chars().count());
                widths[index] = cells.fold(widths[index], usize::max);
            }
        }
        let header = self.columns.map(|column| column.header.to_string());
        for cells in std::iter::once(&header).chain(&self.rows) {
            for (index, (cell, column)) in cells.iter().zip(&self.columns).enumerate() {
                let width = widths[index];
                let _ = match (index + 1 == N, column.right) {
                    (true, _) => write!(out, "{cell}"),
                    (false, true) => write!(out, "{cell:>width$}  "),
                    (false, false) => write!(out, "{cell:<width$}  "),
                };
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_to_the_width_aligns_sizes_right_and_fits_a_fit_column() {
        let mut table = Table::new([
            Column::fit("NAME"),
            Column::right("SIZE", 6),
            Column::left("STATE", 3),
            Column::left("MODEL", 0),
        ]);
        table.row(["numpy".into(), "1 B".into(), "ok".into(), "m/".into()]);
        table.row(["x".into(), "10 KiB".into(), "damaged".into(), "-".into()]);
        let mut out = String::new();
        table.render(&mut out);
        assert_eq!(
            out,
            "NAME     SIZE  STATE  MODEL\n\
             numpy     1 B  ok   m/\n\
             x      10 KiB  damaged  -\n"
        );
    }
}
