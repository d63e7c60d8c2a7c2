"""Repository functions: one per named query in `sql/queries/`, connection first."""
