"""The validate stage: great-expectations rules over the labels and posters, and the
Data Docs page."""
