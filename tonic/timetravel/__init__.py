"""Time travel: which snapshot a run resumes from and what each snapshot records."""
