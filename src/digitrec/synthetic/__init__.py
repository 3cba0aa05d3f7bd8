"""Training data that is drawn, not read: the rows of digits the row reader learns from and the pages of
digits and of other things the digit detector learns from, each made from MNIST's training digits
and a seeded random generator, so that a run that draws them again draws the same."""
