"""Trying a chat draft ("try it"): `parts` (the pure half: manifests, a run's events as message parts),
`run` (starting and sweeping trial runs) and `feed` (one chat socket's trials, followed live)."""
