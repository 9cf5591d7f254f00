-- Failed sign-ins are counted per name *and* per address they came from, so someone
-- guessing from one address cannot lock an operator out of theirs (a looser limit
-- across all addresses still bounds guessing from many).
ALTER TABLE operator_sign_in_failures ADD COLUMN source TEXT NOT NULL DEFAULT '';
