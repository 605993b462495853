"""Operations: the module publish lane (drift, ledger, verification) and the compliance signoff report."""
