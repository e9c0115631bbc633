"""Where the data lives and how it is read: the shared data folder, the shipped weights folder, paired hazy/clear
sets and the train/judge splits."""
