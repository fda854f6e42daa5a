"""The weekly digest: schedule → job (period, posts, renderer) → messages → delivery through the ledger."""
