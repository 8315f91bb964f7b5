"""Budgets as the API shows and manages them: `view` (the budgets a user is under, from the gateway),
`decisions` (the gateway's decisions on the user's calls), `admin` (admin-set policies and throttles,
pure) and `admin_store` (their Firestore I/O)."""
