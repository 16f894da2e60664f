"""CVM's inf_diario source: where the files are, how to fetch them, what their headers mean."""
