"""What the service keeps about what happened, never about callers: the hash-chained audit log
(its keys, witness, chain walk and exports), the confidentiality exceptions register, and the
live-call registry the bridge and the manager share."""
